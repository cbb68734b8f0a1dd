package registry

import (
	"context"
	"encoding/json"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Secrets, after pkg/registry/core/secret/strategy.go.

func secrets() *Resource {
	return &Resource{Version: "v1", Resource: "secrets", Singular: "secret", Kind: "Secret", ListKind: "SecretList", Namespaced: true,
		New: func() runtime.Object { return &corev1.Secret{} }, NewList: func() runtime.Object { return &corev1.SecretList{} },
		Strategy: secretStrategy{BaseStrategy{Namespaced: true}}}
}

type secretStrategy struct{ BaseStrategy }

var _ Strategy = secretStrategy{}

// coreNameIsDNSSubdomain is NameIsDNSSubdomain as a ValidateNameFunc value.
var coreNameIsDNSSubdomain apivalidation.ValidateNameFunc = apivalidation.NameIsDNSSubdomain

// Default is SetDefaults_Secret (type Opaque) plus the v1 conversion that
// merges the write-only stringData into data.
func (secretStrategy) Default(obj runtime.Object) {
	s := obj.(*corev1.Secret)
	if s.Type == "" {
		s.Type = corev1.SecretTypeOpaque
	}
	if len(s.StringData) > 0 {
		if s.Data == nil {
			s.Data = make(map[string][]byte, len(s.StringData))
		}
		for k, v := range s.StringData {
			s.Data[k] = []byte(v)
		}
	}
	s.StringData = nil
}

// Validate is ValidateSecret.
func (secretStrategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	return coreValidateSecret(obj.(*corev1.Secret))
}

func coreValidateSecret(s *corev1.Secret) field.ErrorList {
	allErrs := coreValidateObjectMeta(&s.ObjectMeta, true, coreNameIsDNSSubdomain)
	dataPath := field.NewPath("data")
	total := 0
	for _, key := range coreSortedKeys(s.Data) {
		for _, msg := range validation.IsConfigMapKey(key) {
			allErrs = append(allErrs, field.Invalid(dataPath.Key(key), key, msg))
		}
		total += len(s.Data[key])
	}
	if total > coreMaxConfigSize {
		allErrs = append(allErrs, field.TooLong(dataPath, "", coreMaxConfigSize))
	}
	jsonKey := func(key string) {
		b, ok := s.Data[key]
		if !ok {
			allErrs = append(allErrs, field.Required(dataPath.Key(key), ""))
			return
		}
		if err := json.Unmarshal(b, &map[string]interface{}{}); err != nil {
			allErrs = append(allErrs, field.Invalid(dataPath.Key(key), "<secret contents redacted>", err.Error()))
		}
	}
	switch s.Type {
	case corev1.SecretTypeServiceAccountToken:
		// Only the annotation; uid and token are filled in by a controller.
		if s.Annotations[corev1.ServiceAccountNameKey] == "" {
			allErrs = append(allErrs, field.Required(field.NewPath("metadata", "annotations").Key(corev1.ServiceAccountNameKey), ""))
		}
	case corev1.SecretTypeDockercfg:
		jsonKey(corev1.DockerConfigKey)
	case corev1.SecretTypeDockerConfigJson:
		jsonKey(corev1.DockerConfigJsonKey)
	case corev1.SecretTypeBasicAuth:
		_, u := s.Data[corev1.BasicAuthUsernameKey]
		_, p := s.Data[corev1.BasicAuthPasswordKey]
		if !u && !p {
			allErrs = append(allErrs, field.Required(dataPath.Key(corev1.BasicAuthUsernameKey), ""))
			allErrs = append(allErrs, field.Required(dataPath.Key(corev1.BasicAuthPasswordKey), ""))
		}
	case corev1.SecretTypeSSHAuth:
		if len(s.Data[corev1.SSHAuthPrivateKey]) == 0 {
			allErrs = append(allErrs, field.Required(dataPath.Key(corev1.SSHAuthPrivateKey), ""))
		}
	case corev1.SecretTypeTLS:
		if _, ok := s.Data[corev1.TLSCertKey]; !ok {
			allErrs = append(allErrs, field.Required(dataPath.Key(corev1.TLSCertKey), ""))
		}
		if _, ok := s.Data[corev1.TLSPrivateKeyKey]; !ok {
			allErrs = append(allErrs, field.Required(dataPath.Key(corev1.TLSPrivateKeyKey), ""))
		}
	}
	return allErrs
}

// ValidateUpdate is ValidateSecretUpdate: the type never changes, and an
// immutable Secret keeps its data and immutable flag.
func (secretStrategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	s, oldS := obj.(*corev1.Secret), old.(*corev1.Secret)
	allErrs := coreValidateObjectMetaUpdate(&s.ObjectMeta, &oldS.ObjectMeta)
	allErrs = append(allErrs, apivalidation.ValidateImmutableField(s.Type, oldS.Type, field.NewPath("type"))...)
	if oldS.Immutable != nil && *oldS.Immutable {
		const msg = "field is immutable when `immutable` is set"
		if s.Immutable == nil || !*s.Immutable {
			allErrs = append(allErrs, field.Forbidden(field.NewPath("immutable"), msg))
		}
		if !coreBytesMapEqual(s.Data, oldS.Data) {
			allErrs = append(allErrs, field.Forbidden(field.NewPath("data"), msg))
		}
	}
	return append(allErrs, coreValidateSecret(s)...)
}

// SelectableFields: type.
func (secretStrategy) SelectableFields(obj runtime.Object) fields.Set {
	return fields.Set{"type": string(obj.(*corev1.Secret).Type)}
}

// TableColumns: NAME TYPE DATA AGE.
func (secretStrategy) TableColumns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		NameColumn(),
		{Name: "Type", Type: "string", Description: corev1.Secret{}.SwaggerDoc()["type"]},
		{Name: "Data", Type: "string", Description: corev1.Secret{}.SwaggerDoc()["data"]},
		AgeColumn(),
	}
}

func (secretStrategy) TableRow(obj runtime.Object, now time.Time) []interface{} {
	s := obj.(*corev1.Secret)
	return []interface{}{s.Name, string(s.Type), int64(len(s.Data)), Age(s.CreationTimestamp, now)}
}

// coreSortedKeys returns a map's keys in order, so errors come out stably.
func coreSortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
