package registry

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Events (core/v1), after pkg/registry/core/event/strategy.go. Requests to
// core/v1 get only the legacy validation (for compatibility with old
// clients); the names are checked only as path segments, which is what the
// generic registry does after the strategy.

func events() *Resource {
	return &Resource{Version: "v1", Resource: "events", Singular: "event", Kind: "Event", ListKind: "EventList", Namespaced: true,
		ShortNames: []string{"ev"},
		New:        func() runtime.Object { return &corev1.Event{} }, NewList: func() runtime.Object { return &corev1.EventList{} },
		Strategy: eventStrategy{BaseStrategy{Namespaced: true, NameFn: path.ValidatePathSegmentName}}}
}

type eventStrategy struct{ BaseStrategy }

var _ Strategy = eventStrategy{}

// Limits of the newer event fields.
const (
	coreEventReportingInstanceLimit = 128
	coreEventActionLimit            = 128
	coreEventReasonLimit            = 128
	coreEventNoteLimit              = 1024
)

// Validate is legacyValidateEvent plus the generic object-meta checks.
func (s eventStrategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	ev := obj.(*corev1.Event)
	return append(coreValidateEventLegacy(ev), s.ValidateMeta(obj)...)
}

// ValidateUpdate is legacyValidateEvent of the new event plus the metadata
// update rules.
func (s eventStrategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	ev := obj.(*corev1.Event)
	allErrs := coreValidateEventLegacy(ev)
	allErrs = append(allErrs, s.ValidateMeta(obj)...)
	return append(allErrs, s.ValidateMetaUpdate(obj, old)...)
}

// coreValidateEventLegacy is legacyValidateEvent.
func coreValidateEventLegacy(ev *corev1.Event) field.ErrorList {
	var allErrs field.ErrorList
	nsPath := field.NewPath("involvedObject", "namespace")
	if ev.EventTime.IsZero() {
		if len(ev.InvolvedObject.Namespace) == 0 {
			if ev.Namespace != metav1.NamespaceNone && ev.Namespace != metav1.NamespaceDefault {
				allErrs = append(allErrs, field.Invalid(nsPath, ev.InvolvedObject.Namespace, "does not match event.namespace"))
			}
		} else if ev.Namespace != ev.InvolvedObject.Namespace {
			allErrs = append(allErrs, field.Invalid(nsPath, ev.InvolvedObject.Namespace, "does not match event.namespace"))
		}
	} else {
		if len(ev.InvolvedObject.Namespace) == 0 && ev.Namespace != metav1.NamespaceDefault && ev.Namespace != metav1.NamespaceSystem {
			allErrs = append(allErrs, field.Invalid(nsPath, ev.InvolvedObject.Namespace, "does not match event.namespace"))
		}
		if len(ev.ReportingController) == 0 {
			allErrs = append(allErrs, field.Required(field.NewPath("reportingController"), ""))
		}
		for _, msg := range validation.IsQualifiedName(ev.ReportingController) {
			allErrs = append(allErrs, field.Invalid(field.NewPath("reportingController"), ev.ReportingController, msg))
		}
		lim := func(name, v string, limit int) {
			if len(v) > limit {
				allErrs = append(allErrs, field.Invalid(field.NewPath(name), "", fmt.Sprintf("can have at most %v characters", limit)))
			}
		}
		if len(ev.ReportingInstance) == 0 {
			allErrs = append(allErrs, field.Required(field.NewPath("reportingInstance"), ""))
		}
		lim("reportingInstance", ev.ReportingInstance, coreEventReportingInstanceLimit)
		if len(ev.Action) == 0 {
			allErrs = append(allErrs, field.Required(field.NewPath("action"), ""))
		}
		lim("action", ev.Action, coreEventActionLimit)
		if len(ev.Reason) == 0 {
			allErrs = append(allErrs, field.Required(field.NewPath("reason"), ""))
		}
		lim("reason", ev.Reason, coreEventReasonLimit)
		lim("message", ev.Message, coreEventNoteLimit)
	}
	for _, msg := range validation.IsDNS1123Subdomain(ev.Namespace) {
		allErrs = append(allErrs, field.Invalid(field.NewPath("namespace"), ev.Namespace, msg))
	}
	return allErrs
}

// SelectableFields is the event ToSelectableFields.
func (eventStrategy) SelectableFields(obj runtime.Object) fields.Set {
	ev := obj.(*corev1.Event)
	source := ev.Source.Component
	if source == "" {
		source = ev.ReportingController
	}
	return fields.Set{
		"involvedObject.kind":            ev.InvolvedObject.Kind,
		"involvedObject.namespace":       ev.InvolvedObject.Namespace,
		"involvedObject.name":            ev.InvolvedObject.Name,
		"involvedObject.uid":             string(ev.InvolvedObject.UID),
		"involvedObject.apiVersion":      ev.InvolvedObject.APIVersion,
		"involvedObject.resourceVersion": ev.InvolvedObject.ResourceVersion,
		"involvedObject.fieldPath":       ev.InvolvedObject.FieldPath,
		"reason":                         ev.Reason,
		"reportingComponent":             ev.ReportingController,
		"source":                         source,
		"type":                           ev.Type,
	}
}

// TableColumns are kubectl's for events: LAST SEEN TYPE REASON OBJECT
// MESSAGE, and with -o wide SUBOBJECT SOURCE FIRST SEEN COUNT NAME. The
// Name column is not first here, as in Kubernetes.
func (eventStrategy) TableColumns() []metav1.TableColumnDefinition {
	ev := corev1.Event{}
	return []metav1.TableColumnDefinition{
		{Name: "Last Seen", Type: "string", Description: ev.SwaggerDoc()["lastTimestamp"]},
		{Name: "Type", Type: "string", Description: ev.SwaggerDoc()["type"]},
		{Name: "Reason", Type: "string", Description: ev.SwaggerDoc()["reason"]},
		{Name: "Object", Type: "string", Description: ev.SwaggerDoc()["involvedObject"]},
		{Name: "Subobject", Type: "string", Priority: 1, Description: ev.InvolvedObject.SwaggerDoc()["fieldPath"]},
		{Name: "Source", Type: "string", Priority: 1, Description: ev.SwaggerDoc()["source"]},
		{Name: "Message", Type: "string", Description: ev.SwaggerDoc()["message"]},
		{Name: "First Seen", Type: "string", Priority: 1, Description: ev.SwaggerDoc()["firstTimestamp"]},
		{Name: "Count", Type: "string", Priority: 1, Description: ev.SwaggerDoc()["count"]},
		{Name: "Name", Type: "string", Priority: 1, Format: "name", Description: metav1.ObjectMeta{}.SwaggerDoc()["name"]},
	}
}

// TableRow is printEvent.
func (eventStrategy) TableRow(obj runtime.Object, now time.Time) []interface{} {
	ev := obj.(*corev1.Event)
	first := Age(ev.FirstTimestamp, now)
	if ev.FirstTimestamp.IsZero() {
		first = coreMicroAge(ev.EventTime, now)
	}
	last := Age(ev.LastTimestamp, now)
	if ev.LastTimestamp.IsZero() {
		last = first
	}
	count := ev.Count
	if ev.Series != nil {
		last = coreMicroAge(ev.Series.LastObservedTime, now)
		count = ev.Series.Count
	} else if count == 0 {
		count = 1 // singleton events of the new API have no count
	}
	target := strings.ToLower(ev.InvolvedObject.Kind)
	if len(ev.InvolvedObject.Name) > 0 {
		target += "/" + ev.InvolvedObject.Name
	}
	return []interface{}{last, ev.Type, ev.Reason, target, ev.InvolvedObject.FieldPath,
		coreEventSource(ev), strings.TrimSpace(ev.Message), first, int64(count), ev.Name}
}

func coreMicroAge(t metav1.MicroTime, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return Age(metav1.NewTime(t.Time), now)
}

// coreEventSource is formatEventSource: component (or reportingController),
// then ", host" (or reportingInstance) when set.
func coreEventSource(ev *corev1.Event) string {
	first := func(a, b string) string {
		if a != "" {
			return a
		}
		return b
	}
	component := first(ev.Source.Component, ev.ReportingController)
	instance := first(ev.Source.Host, ev.ReportingInstance)
	if instance == "" {
		return component
	}
	return component + ", " + instance
}
