package registry

import (
	"context"
	"reflect"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// BaseStrategy is the behaviour shared by most resources. Embed it and
// override what differs. It works on any k8s.io/api object with
// ObjectMeta, and (when present) Spec and Status fields.
type BaseStrategy struct {
	// Namespaced resources require metadata.namespace.
	Namespaced bool
	// NameFn validates metadata.name; nil means DNS-1123 subdomain.
	NameFn apivalidation.ValidateNameFunc
	// HasStatus: the resource has a status subresource, so main-resource
	// writes keep the old status and /status writes keep the old spec.
	HasStatus bool
	// Generation: metadata.generation starts at 1 and is bumped when Spec
	// changes.
	Generation bool
}

func (BaseStrategy) Default(runtime.Object) {}

func (b BaseStrategy) PrepareForCreate(_ context.Context, obj runtime.Object) {
	if b.HasStatus {
		resetField(obj, "Status")
	}
	if b.Generation {
		if m, err := meta.Accessor(obj); err == nil {
			m.SetGeneration(1)
		}
	}
}

func (b BaseStrategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	if b.HasStatus {
		copyField(obj, old, "Status")
	}
	if b.Generation {
		nm, err1 := meta.Accessor(obj)
		om, err2 := meta.Accessor(old)
		if err1 == nil && err2 == nil {
			nm.SetGeneration(om.GetGeneration())
			if !apiequality.Semantic.DeepEqual(fieldOf(obj, "Spec"), fieldOf(old, "Spec")) {
				nm.SetGeneration(om.GetGeneration() + 1)
			}
		}
	}
}

func (b BaseStrategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	return b.ValidateMeta(obj)
}

func (b BaseStrategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	return b.ValidateMetaUpdate(obj, old)
}

func (b BaseStrategy) PrepareForStatusUpdate(_ context.Context, obj, old runtime.Object) {
	// A status write changes status (and labels/annotations); the spec,
	// generation and deletion marks stay as they were.
	copyField(obj, old, "Spec")
	nm, err1 := meta.Accessor(obj)
	om, err2 := meta.Accessor(old)
	if err1 == nil && err2 == nil {
		nm.SetGeneration(om.GetGeneration())
		nm.SetDeletionTimestamp(om.GetDeletionTimestamp())
		nm.SetDeletionGracePeriodSeconds(om.GetDeletionGracePeriodSeconds())
	}
}

func (b BaseStrategy) ValidateStatusUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	return b.ValidateMetaUpdate(obj, old)
}

func (BaseStrategy) SelectableFields(runtime.Object) fields.Set { return fields.Set{} }

// TableColumns default: NAME and AGE, as Kubernetes' default table.
func (BaseStrategy) TableColumns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{NameColumn(), AgeColumn()}
}

func (BaseStrategy) TableRow(obj runtime.Object, now time.Time) []interface{} {
	m, err := meta.Accessor(obj)
	if err != nil {
		return []interface{}{"", ""}
	}
	return []interface{}{m.GetName(), Age(m.GetCreationTimestamp(), now)}
}

// ValidateMeta validates ObjectMeta of a new object.
func (b BaseStrategy) ValidateMeta(obj runtime.Object) field.ErrorList {
	om := objectMeta(obj)
	if om == nil {
		return nil
	}
	nameFn := b.NameFn
	if nameFn == nil {
		nameFn = apivalidation.NameIsDNSSubdomain
	}
	return apivalidation.ValidateObjectMeta(om, b.Namespaced, nameFn, field.NewPath("metadata"))
}

// ValidateMetaUpdate validates ObjectMeta of a replacement.
func (b BaseStrategy) ValidateMetaUpdate(obj, old runtime.Object) field.ErrorList {
	nm, om := objectMeta(obj), objectMeta(old)
	if nm == nil || om == nil {
		return nil
	}
	return apivalidation.ValidateObjectMetaUpdate(nm, om, field.NewPath("metadata"))
}

// NameColumn is the Name column every table starts with.
func NameColumn() metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: "Name", Type: "string", Format: "name",
		Description: metav1.ObjectMeta{}.SwaggerDoc()["name"]}
}

// AgeColumn is the Age column.
func AgeColumn() metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: "Age", Type: "string",
		Description: metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"]}
}

// Age renders a creation time as kubectl shows it ("5m", "3d4h", "<unknown>").
func Age(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}

func objectMeta(obj runtime.Object) *metav1.ObjectMeta {
	v := reflect.ValueOf(obj)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	f := v.Elem().FieldByName("ObjectMeta")
	if !f.IsValid() {
		return nil
	}
	om, _ := f.Addr().Interface().(*metav1.ObjectMeta)
	return om
}

func fieldOf(obj runtime.Object, name string) interface{} {
	f := reflect.ValueOf(obj).Elem().FieldByName(name)
	if !f.IsValid() {
		return nil
	}
	return f.Interface()
}

func resetField(obj runtime.Object, name string) {
	f := reflect.ValueOf(obj).Elem().FieldByName(name)
	if f.IsValid() && f.CanSet() {
		f.Set(reflect.Zero(f.Type()))
	}
}

func copyField(dst, src runtime.Object, name string) {
	d := reflect.ValueOf(dst).Elem().FieldByName(name)
	s := reflect.ValueOf(src).Elem().FieldByName(name)
	if d.IsValid() && s.IsValid() && d.CanSet() {
		d.Set(s)
	}
}
