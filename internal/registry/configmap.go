package registry

import (
	"context"
	"reflect"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ConfigMaps, after pkg/registry/core/configmap/strategy.go.

func configMaps() *Resource {
	return &Resource{Version: "v1", Resource: "configmaps", Singular: "configmap", Kind: "ConfigMap", ListKind: "ConfigMapList", Namespaced: true,
		ShortNames: []string{"cm"},
		New:        func() runtime.Object { return &corev1.ConfigMap{} }, NewList: func() runtime.Object { return &corev1.ConfigMapList{} },
		Strategy: configMapStrategy{BaseStrategy{Namespaced: true}}}
}

type configMapStrategy struct{ BaseStrategy }

var _ Strategy = configMapStrategy{}

// coreMaxConfigSize is MaxSecretSize, shared by ConfigMaps and Secrets.
const coreMaxConfigSize = 1 * 1024 * 1024

// Validate is ValidateConfigMap.
func (configMapStrategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	return coreValidateConfigMap(obj.(*corev1.ConfigMap))
}

func coreValidateConfigMap(cm *corev1.ConfigMap) field.ErrorList {
	allErrs := coreValidateObjectMeta(&cm.ObjectMeta, true, coreNameIsDNSSubdomain)
	total := 0
	for _, key := range coreSortedKeys(cm.Data) {
		p := field.NewPath("data").Key(key)
		for _, msg := range validation.IsConfigMapKey(key) {
			allErrs = append(allErrs, field.Invalid(p, key, msg))
		}
		if _, dup := cm.BinaryData[key]; dup {
			allErrs = append(allErrs, field.Invalid(p, key, "duplicate of key present in binaryData"))
		}
		total += len(cm.Data[key])
	}
	for _, key := range coreSortedKeys(cm.BinaryData) {
		for _, msg := range validation.IsConfigMapKey(key) {
			allErrs = append(allErrs, field.Invalid(field.NewPath("binaryData").Key(key), key, msg))
		}
		total += len(cm.BinaryData[key])
	}
	if total > coreMaxConfigSize {
		// Kubernetes reports this for the whole object (empty path).
		allErrs = append(allErrs, field.TooLong(field.NewPath(""), "", coreMaxConfigSize))
	}
	return allErrs
}

// ValidateUpdate is ValidateConfigMapUpdate: an immutable ConfigMap keeps
// its data, binaryData and immutable flag.
func (configMapStrategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	cm, oldCM := obj.(*corev1.ConfigMap), old.(*corev1.ConfigMap)
	allErrs := coreValidateObjectMetaUpdate(&cm.ObjectMeta, &oldCM.ObjectMeta)
	if oldCM.Immutable != nil && *oldCM.Immutable {
		const msg = "field is immutable when `immutable` is set"
		if cm.Immutable == nil || !*cm.Immutable {
			allErrs = append(allErrs, field.Forbidden(field.NewPath("immutable"), msg))
		}
		if !coreStringMapEqual(cm.Data, oldCM.Data) {
			allErrs = append(allErrs, field.Forbidden(field.NewPath("data"), msg))
		}
		if !coreBytesMapEqual(cm.BinaryData, oldCM.BinaryData) {
			allErrs = append(allErrs, field.Forbidden(field.NewPath("binaryData"), msg))
		}
	}
	return append(allErrs, coreValidateConfigMap(cm)...)
}

// coreStringMapEqual treats nil and empty maps alike (SetDefaults_ConfigMap
// makes data non-nil in Kubernetes, so they never differ there).
func coreStringMapEqual(a, b map[string]string) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}

func coreBytesMapEqual(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || string(v) != string(w) {
			return false
		}
	}
	return true
}

// TableColumns: NAME DATA AGE.
func (configMapStrategy) TableColumns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		NameColumn(),
		{Name: "Data", Type: "string", Description: corev1.ConfigMap{}.SwaggerDoc()["data"]},
		AgeColumn(),
	}
}

func (configMapStrategy) TableRow(obj runtime.Object, now time.Time) []interface{} {
	cm := obj.(*corev1.ConfigMap)
	return []interface{}{cm.Name, int64(len(cm.Data) + len(cm.BinaryData)), Age(cm.CreationTimestamp, now)}
}
