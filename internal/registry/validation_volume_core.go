package registry

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Volume validation, after ValidateVolumes / validateVolumeSource. The
// common sources (emptyDir, hostPath, secret, configMap, downwardAPI,
// projected, persistentVolumeClaim, nfs, csi, ephemeral, image) are checked
// field by field; the legacy cloud/in-tree sources only for their required
// fields.

// coreValidateVolumes is ValidateVolumes: the map holds the valid volumes
// by name, for volumeMounts to refer to.
func coreValidateVolumes(volumes []corev1.Volume, podMeta *metav1.ObjectMeta, fldPath *field.Path) (map[string]corev1.VolumeSource, field.ErrorList) {
	var allErrs field.ErrorList
	allNames := sets.New[string]()
	createdPVCs := sets.New[string]()
	if podMeta != nil && podMeta.Name != "" {
		for _, v := range volumes {
			if v.Ephemeral != nil {
				createdPVCs.Insert(podMeta.Name + "-" + v.Name)
			}
		}
	}
	vols := make(map[string]corev1.VolumeSource)
	for i := range volumes {
		vol := &volumes[i]
		idxPath := fldPath.Index(i)
		namePath := idxPath.Child("name")
		el := coreValidateVolumeSource(&vol.VolumeSource, idxPath, vol.Name, podMeta)
		if len(vol.Name) == 0 {
			el = append(el, field.Required(namePath, ""))
		} else {
			el = append(el, coreDNS1123Label(vol.Name, namePath)...)
		}
		if allNames.Has(vol.Name) {
			el = append(el, field.Duplicate(namePath, vol.Name))
		}
		if len(el) == 0 {
			allNames.Insert(vol.Name)
			vols[vol.Name] = vol.VolumeSource
		} else {
			allErrs = append(allErrs, el...)
		}
		if vol.PersistentVolumeClaim != nil && createdPVCs.Has(vol.PersistentVolumeClaim.ClaimName) {
			allErrs = append(allErrs, field.Invalid(idxPath.Child("persistentVolumeClaim").Child("claimName"), vol.PersistentVolumeClaim.ClaimName,
				"must not reference a PVC that gets created for an ephemeral volume"))
		}
	}
	return vols, allErrs
}

// coreVolumeSourceCount counts the sources set in a VolumeSource.
func coreVolumeSourceCount(vs *corev1.VolumeSource) int {
	n := 0
	for _, s := range coreVolumeSources(vs) {
		if s.set {
			n++
		}
	}
	return n
}

type coreVolumeSourceField struct {
	set   bool
	name  string // JSON name, as in the Forbidden error
	check func(p *field.Path) field.ErrorList
}

// coreVolumeSources lists the sources in the order Kubernetes checks them.
// The names are the ones Kubernetes reports, typos included.
func coreVolumeSources(vs *corev1.VolumeSource) []coreVolumeSourceField {
	req := func(p *field.Path, pairs ...string) field.ErrorList {
		var errs field.ErrorList
		for i := 0; i+1 < len(pairs); i += 2 {
			if pairs[i+1] == "" {
				errs = append(errs, field.Required(p.Child(pairs[i]), ""))
			}
		}
		return errs
	}
	return []coreVolumeSourceField{
		{vs.EmptyDir != nil, "emptyDir", func(p *field.Path) field.ErrorList {
			if l := vs.EmptyDir.SizeLimit; l != nil && l.Cmp(resource.Quantity{}) < 0 {
				return field.ErrorList{field.Forbidden(p.Child("emptyDir").Child("sizeLimit"), "SizeLimit field must be a valid resource quantity")}
			}
			return nil
		}},
		{vs.HostPath != nil, "hostPath", func(p *field.Path) field.ErrorList {
			p = p.Child("hostPath")
			if len(vs.HostPath.Path) == 0 {
				return field.ErrorList{field.Required(p.Child("path"), "")}
			}
			errs := coreValidatePathNoBacksteps(vs.HostPath.Path, p.Child("path"))
			if t := vs.HostPath.Type; t != nil && !coreHostPathTypes.Has(*t) {
				errs = append(errs, field.NotSupported(p.Child("type"), t, sets.List(coreHostPathTypes)))
			}
			return errs
		}},
		{vs.GitRepo != nil, "gitRepo", func(p *field.Path) field.ErrorList {
			p = p.Child("gitRepo")
			errs := req(p, "repository", vs.GitRepo.Repository)
			return append(errs, coreValidateLocalDescendingPath(vs.GitRepo.Directory, p.Child("directory"))...)
		}},
		{vs.GCEPersistentDisk != nil, "gcePersistentDisk", func(p *field.Path) field.ErrorList {
			return req(p.Child("persistentDisk"), "pdName", vs.GCEPersistentDisk.PDName)
		}},
		{vs.AWSElasticBlockStore != nil, "awsElasticBlockStore", func(p *field.Path) field.ErrorList {
			return req(p.Child("awsElasticBlockStore"), "volumeID", vs.AWSElasticBlockStore.VolumeID)
		}},
		{vs.Secret != nil, "secret", func(p *field.Path) field.ErrorList {
			p = p.Child("secret")
			errs := req(p, "secretName", vs.Secret.SecretName)
			errs = append(errs, coreValidateFileMode(vs.Secret.DefaultMode, p.Child("defaultMode"))...)
			for i := range vs.Secret.Items {
				errs = append(errs, coreValidateKeyToPath(&vs.Secret.Items[i], p.Child("items").Index(i))...)
			}
			return errs
		}},
		{vs.NFS != nil, "nfs", func(p *field.Path) field.ErrorList {
			p = p.Child("nfs")
			errs := req(p, "server", vs.NFS.Server, "path", vs.NFS.Path)
			if !path.IsAbs(vs.NFS.Path) {
				errs = append(errs, field.Invalid(p.Child("path"), vs.NFS.Path, "must be an absolute path"))
			}
			return errs
		}},
		{vs.ISCSI != nil, "iscsi", func(p *field.Path) field.ErrorList {
			return req(p.Child("iscsi"), "targetPortal", vs.ISCSI.TargetPortal, "iqn", vs.ISCSI.IQN)
		}},
		{vs.Glusterfs != nil, "glusterfs", func(p *field.Path) field.ErrorList {
			return req(p.Child("glusterfs"), "endpoints", vs.Glusterfs.EndpointsName, "path", vs.Glusterfs.Path)
		}},
		{vs.Flocker != nil, "flocker", func(p *field.Path) field.ErrorList {
			if vs.Flocker.DatasetName == "" && vs.Flocker.DatasetUUID == "" {
				return field.ErrorList{field.Required(p.Child("flocker"), "one of datasetName and datasetUUID is required")}
			}
			return nil
		}},
		{vs.PersistentVolumeClaim != nil, "persistentVolumeClaim", func(p *field.Path) field.ErrorList {
			return req(p.Child("persistentVolumeClaim"), "claimName", vs.PersistentVolumeClaim.ClaimName)
		}},
		{vs.RBD != nil, "rbd", func(p *field.Path) field.ErrorList {
			errs := field.ErrorList{}
			if len(vs.RBD.CephMonitors) == 0 {
				errs = append(errs, field.Required(p.Child("rbd").Child("monitors"), ""))
			}
			return append(errs, req(p.Child("rbd"), "image", vs.RBD.RBDImage)...)
		}},
		{vs.Cinder != nil, "cinder", func(p *field.Path) field.ErrorList {
			return req(p.Child("cinder"), "volumeID", vs.Cinder.VolumeID)
		}},
		{vs.CephFS != nil, "cephFS", func(p *field.Path) field.ErrorList {
			if len(vs.CephFS.Monitors) == 0 {
				return field.ErrorList{field.Required(p.Child("cephfs").Child("monitors"), "")}
			}
			return nil
		}},
		{vs.Quobyte != nil, "quobyte", func(p *field.Path) field.ErrorList {
			return req(p.Child("quobyte"), "volume", vs.Quobyte.Volume)
		}},
		{vs.DownwardAPI != nil, "downwarAPI", func(p *field.Path) field.ErrorList {
			p = p.Child("downwardAPI")
			errs := coreValidateFileMode(vs.DownwardAPI.DefaultMode, p.Child("defaultMode"))
			for i := range vs.DownwardAPI.Items {
				// Kubernetes reports item errors at downwardAPI, not at the item.
				errs = append(errs, coreValidateDownwardAPIFile(&vs.DownwardAPI.Items[i], p)...)
			}
			return errs
		}},
		{vs.FC != nil, "fc", func(p *field.Path) field.ErrorList {
			if len(vs.FC.TargetWWNs) < 1 && len(vs.FC.WWIDs) < 1 {
				return field.ErrorList{field.Required(p.Child("fc").Child("targetWWNs"), "must specify either targetWWNs or wwids, but not both")}
			}
			return nil
		}},
		{vs.FlexVolume != nil, "flexVolume", func(p *field.Path) field.ErrorList {
			return req(p.Child("flexVolume"), "driver", vs.FlexVolume.Driver)
		}},
		{vs.ConfigMap != nil, "configMap", func(p *field.Path) field.ErrorList {
			p = p.Child("configMap")
			errs := req(p, "name", vs.ConfigMap.Name)
			errs = append(errs, coreValidateFileMode(vs.ConfigMap.DefaultMode, p.Child("defaultMode"))...)
			for i := range vs.ConfigMap.Items {
				errs = append(errs, coreValidateKeyToPath(&vs.ConfigMap.Items[i], p.Child("items").Index(i))...)
			}
			return errs
		}},
		{vs.AzureFile != nil, "azureFile", func(p *field.Path) field.ErrorList {
			return req(p.Child("azureFile"), "secretName", vs.AzureFile.SecretName, "shareName", vs.AzureFile.ShareName)
		}},
		{vs.VsphereVolume != nil, "vsphereVolume", func(p *field.Path) field.ErrorList {
			return req(p.Child("vsphereVolume"), "volumePath", vs.VsphereVolume.VolumePath)
		}},
		{vs.PhotonPersistentDisk != nil, "photonPersistentDisk", func(p *field.Path) field.ErrorList {
			return req(p.Child("photonPersistentDisk"), "pdID", vs.PhotonPersistentDisk.PdID)
		}},
		{vs.PortworxVolume != nil, "portworxVolume", func(p *field.Path) field.ErrorList {
			return req(p.Child("portworxVolume"), "volumeID", vs.PortworxVolume.VolumeID)
		}},
		{vs.AzureDisk != nil, "azureDisk", func(p *field.Path) field.ErrorList {
			return req(p.Child("azureDisk"), "diskName", vs.AzureDisk.DiskName, "diskURI", vs.AzureDisk.DataDiskURI)
		}},
		{vs.StorageOS != nil, "storageos", func(p *field.Path) field.ErrorList {
			return req(p.Child("storageos"), "volumeName", vs.StorageOS.VolumeName)
		}},
		{vs.Projected != nil, "projected", func(p *field.Path) field.ErrorList {
			p = p.Child("projected")
			errs := coreValidateFileMode(vs.Projected.DefaultMode, p.Child("defaultMode"))
			return append(errs, coreValidateProjectionSources(vs.Projected, p)...)
		}},
		{vs.ScaleIO != nil, "scaleIO", func(p *field.Path) field.ErrorList {
			return req(p.Child("scaleIO"), "gateway", vs.ScaleIO.Gateway, "system", vs.ScaleIO.System, "volumeName", vs.ScaleIO.VolumeName)
		}},
		{vs.CSI != nil, "csi", func(p *field.Path) field.ErrorList {
			p = p.Child("csi")
			var errs field.ErrorList
			d := vs.CSI.Driver
			if len(d) == 0 {
				errs = append(errs, field.Required(p.Child("driver"), ""))
			}
			if len(d) > 63 {
				errs = append(errs, field.TooLong(p.Child("driver"), "", 63))
			}
			for _, msg := range validation.IsDNS1123Subdomain(strings.ToLower(d)) {
				errs = append(errs, field.Invalid(p.Child("driver"), d, msg))
			}
			if r := vs.CSI.NodePublishSecretRef; r != nil {
				if len(r.Name) == 0 {
					errs = append(errs, field.Required(p.Child("nodePublishSecretRef", "name"), ""))
				} else {
					for _, msg := range apivalidation.NameIsDNSSubdomain(r.Name, false) {
						errs = append(errs, field.Invalid(p.Child("name"), r.Name, msg))
					}
				}
			}
			return errs
		}},
		{vs.Ephemeral != nil, "ephemeral", func(p *field.Path) field.ErrorList {
			if vs.Ephemeral.VolumeClaimTemplate == nil {
				return field.ErrorList{field.Required(p.Child("ephemeral").Child("volumeClaimTemplate"), "")}
			}
			return nil
		}},
		{vs.Image != nil, "image", func(p *field.Path) field.ErrorList {
			p = p.Child("image")
			var errs field.ErrorList
			if len(vs.Image.Reference) == 0 {
				errs = append(errs, field.Required(p.Child("reference"), ""))
			}
			if pp := vs.Image.PullPolicy; pp != "" && pp != corev1.PullAlways && pp != corev1.PullIfNotPresent && pp != corev1.PullNever {
				errs = append(errs, field.NotSupported(p.Child("pullPolicy"), pp, coreSupportedPullPolicies))
			}
			return errs
		}},
	}
}

// coreValidateVolumeSource is validateVolumeSource: the first source set is
// validated, any later one is Forbidden.
func coreValidateVolumeSource(vs *corev1.VolumeSource, fldPath *field.Path, volName string, podMeta *metav1.ObjectMeta) field.ErrorList {
	var allErrs field.ErrorList
	n := 0
	for _, s := range coreVolumeSources(vs) {
		if !s.set {
			continue
		}
		if n > 0 {
			allErrs = append(allErrs, field.Forbidden(fldPath.Child(s.name), "may not specify more than 1 volume type"))
			continue
		}
		n++
		allErrs = append(allErrs, s.check(fldPath)...)
		if s.name == "ephemeral" && podMeta != nil && podMeta.Name != "" && volName != "" {
			pvcName := podMeta.Name + "-" + volName
			for _, msg := range apivalidation.NameIsDNSSubdomain(pvcName, false) {
				allErrs = append(allErrs, field.Invalid(fldPath.Child("name"), volName, fmt.Sprintf("PVC name %q: %v", pvcName, msg)))
			}
		}
	}
	if n == 0 {
		allErrs = append(allErrs, field.Required(fldPath, "must specify a volume type"))
	}
	return allErrs
}

var coreHostPathTypes = sets.New(
	corev1.HostPathUnset, corev1.HostPathDirectoryOrCreate, corev1.HostPathDirectory,
	corev1.HostPathFileOrCreate, corev1.HostPathFile, corev1.HostPathSocket,
	corev1.HostPathCharDev, corev1.HostPathBlockDev)

const coreFileModeErrorMsg = "must be a number between 0 and 0777 (octal), both inclusive"

func coreValidateFileMode(mode *int32, fldPath *field.Path) field.ErrorList {
	if mode != nil && (*mode > 0777 || *mode < 0) {
		return field.ErrorList{field.Invalid(fldPath, *mode, coreFileModeErrorMsg)}
	}
	return nil
}

// coreValidateKeyToPath is validateKeyToPath.
func coreValidateKeyToPath(kp *corev1.KeyToPath, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if len(kp.Key) == 0 {
		allErrs = append(allErrs, field.Required(fldPath.Child("key"), ""))
	}
	if len(kp.Path) == 0 {
		allErrs = append(allErrs, field.Required(fldPath.Child("path"), ""))
	}
	allErrs = append(allErrs, coreValidateLocalNonReservedPath(kp.Path, fldPath.Child("path"))...)
	allErrs = append(allErrs, coreValidateFileMode(kp.Mode, fldPath.Child("mode"))...)
	return allErrs
}

var coreVolumeDownwardAPIFieldPaths = sets.New("metadata.name", "metadata.namespace", "metadata.labels", "metadata.annotations", "metadata.uid")

// coreValidateDownwardAPIFile is validateDownwardAPIVolumeFile.
func coreValidateDownwardAPIFile(file *corev1.DownwardAPIVolumeFile, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if len(file.Path) == 0 {
		allErrs = append(allErrs, field.Required(fldPath.Child("path"), ""))
	}
	allErrs = append(allErrs, coreValidateLocalNonReservedPath(file.Path, fldPath.Child("path"))...)
	switch {
	case file.FieldRef != nil:
		allErrs = append(allErrs, coreValidateObjectFieldSelector(file.FieldRef, coreVolumeDownwardAPIFieldPaths, fldPath.Child("fieldRef"))...)
		if file.ResourceFieldRef != nil {
			allErrs = append(allErrs, field.Invalid(fldPath, "resource", "fieldRef and resourceFieldRef can not be specified simultaneously"))
		}
	case file.ResourceFieldRef != nil:
		allErrs = append(allErrs, coreValidateResourceFieldSelector(file.ResourceFieldRef, true, fldPath.Child("resourceFieldRef"))...)
	default:
		allErrs = append(allErrs, field.Required(fldPath, "one of fieldRef and resourceFieldRef is required"))
	}
	allErrs = append(allErrs, coreValidateFileMode(file.Mode, fldPath.Child("mode"))...)
	return allErrs
}

// coreValidateProjectionSources is validateProjectionSources (without
// clusterTrustBundle and podCertificate details).
func coreValidateProjectionSources(pv *corev1.ProjectedVolumeSource, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	allPaths := sets.New[string]()
	addPath := func(p, badValue string) {
		if len(p) == 0 {
			return
		}
		if allPaths.Has(p) {
			allErrs = append(allErrs, field.Invalid(fldPath, badValue, "conflicting duplicate paths"))
		}
		allPaths.Insert(p)
	}
	for i, src := range pv.Sources {
		n := 0
		srcPath := fldPath.Child("sources").Index(i)
		if s := src.Secret; s != nil {
			n++
			p := srcPath.Child("secret")
			if len(s.Name) == 0 {
				allErrs = append(allErrs, field.Required(p.Child("name"), ""))
			}
			for j := range s.Items {
				allErrs = append(allErrs, coreValidateKeyToPath(&s.Items[j], p.Child("items").Index(j))...)
				addPath(s.Items[j].Path, s.Name)
			}
		}
		if c := src.ConfigMap; c != nil {
			n++
			p := srcPath.Child("configMap")
			if len(c.Name) == 0 {
				allErrs = append(allErrs, field.Required(p.Child("name"), ""))
			}
			for j := range c.Items {
				allErrs = append(allErrs, coreValidateKeyToPath(&c.Items[j], p.Child("items").Index(j))...)
				addPath(c.Items[j].Path, c.Name)
			}
		}
		if d := src.DownwardAPI; d != nil {
			n++
			for j := range d.Items {
				allErrs = append(allErrs, coreValidateDownwardAPIFile(&d.Items[j], srcPath.Child("downwardAPI"))...)
				addPath(d.Items[j].Path, d.Items[j].Path)
			}
		}
		if t := src.ServiceAccountToken; t != nil {
			n++
			p := srcPath.Child("serviceAccountToken")
			exp := int64(0)
			if t.ExpirationSeconds != nil {
				exp = *t.ExpirationSeconds
			}
			if exp < 10*60 {
				allErrs = append(allErrs, field.Invalid(p.Child("expirationSeconds"), exp, "may not specify a duration less than 10 minutes"))
			}
			if exp > 1<<32 {
				allErrs = append(allErrs, field.Invalid(p.Child("expirationSeconds"), exp, "may not specify a duration larger than 2^32 seconds"))
			}
			if t.Path == "" {
				allErrs = append(allErrs, field.Required(fldPath.Child("path"), ""))
			} else {
				allErrs = append(allErrs, coreValidateLocalNonReservedPath(t.Path, fldPath.Child("path"))...)
			}
		}
		if b := src.ClusterTrustBundle; b != nil {
			n++
			p := srcPath.Child("clusterTrustBundle")
			if b.Path == "" {
				allErrs = append(allErrs, field.Required(p.Child("path"), ""))
			}
			allErrs = append(allErrs, coreValidateLocalNonReservedPath(b.Path, p.Child("path"))...)
			addPath(b.Path, b.Path)
		}
		if src.PodCertificate != nil {
			n++
		}
		if n > 1 {
			allErrs = append(allErrs, field.Forbidden(srcPath, "may not specify more than 1 volume type per source"))
		}
	}
	return allErrs
}

// coreValidateLocalDescendingPath is validateLocalDescendingPath.
func coreValidateLocalDescendingPath(targetPath string, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if path.IsAbs(targetPath) {
		allErrs = append(allErrs, field.Invalid(fldPath, targetPath, "must be a relative path"))
	}
	return append(allErrs, coreValidatePathNoBacksteps(targetPath, fldPath)...)
}

// coreValidatePathNoBacksteps is validatePathNoBacksteps.
func coreValidatePathNoBacksteps(targetPath string, fldPath *field.Path) field.ErrorList {
	for _, item := range strings.Split(filepath.ToSlash(targetPath), "/") {
		if item == ".." {
			return field.ErrorList{field.Invalid(fldPath, targetPath, "must not contain '..'")}
		}
	}
	return nil
}

// coreValidateLocalNonReservedPath is ValidateLocalNonReservedPath.
func coreValidateLocalNonReservedPath(targetPath string, fldPath *field.Path) field.ErrorList {
	allErrs := coreValidateLocalDescendingPath(targetPath, fldPath)
	if strings.HasPrefix(targetPath, "..") && !strings.HasPrefix(targetPath, "../") {
		allErrs = append(allErrs, field.Invalid(fldPath, targetPath, "must not start with '..'"))
	}
	return allErrs
}

var coreMountPropagations = []corev1.MountPropagationMode{corev1.MountPropagationBidirectional, corev1.MountPropagationHostToContainer, corev1.MountPropagationNone}

// coreValidateVolumeMounts is ValidateVolumeMounts. Like Kubernetes, it
// reports subPath, subPathExpr, mountPropagation and recursiveReadOnly
// problems at volumeMounts.<field>, without the index.
func coreValidateVolumeMounts(mounts []corev1.VolumeMount, devices map[string]string, vols map[string]corev1.VolumeSource, ctr *corev1.Container, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	mountpoints := sets.New[string]()
	for i, mnt := range mounts {
		idxPath := fldPath.Index(i)
		if len(mnt.Name) == 0 {
			allErrs = append(allErrs, field.Required(idxPath.Child("name"), ""))
		}
		if _, ok := vols[mnt.Name]; !ok {
			allErrs = append(allErrs, field.NotFound(idxPath.Child("name"), mnt.Name))
		}
		if len(mnt.MountPath) == 0 {
			allErrs = append(allErrs, field.Required(idxPath.Child("mountPath"), ""))
		}
		if mountpoints.Has(mnt.MountPath) {
			allErrs = append(allErrs, field.Invalid(idxPath.Child("mountPath"), mnt.MountPath, "must be unique"))
		}
		mountpoints.Insert(mnt.MountPath)
		if _, ok := devices[mnt.Name]; ok {
			allErrs = append(allErrs, field.Invalid(idxPath.Child("name"), mnt.Name, "must not already exist in volumeDevices"))
		}
		for _, dp := range devices {
			if dp == mnt.MountPath {
				allErrs = append(allErrs, field.Invalid(idxPath.Child("mountPath"), mnt.MountPath, "must not already exist as a path in volumeDevices"))
				break
			}
		}
		if v, ok := vols[mnt.Name]; ok && v.Image != nil {
			if len(mnt.SubPath) != 0 {
				allErrs = append(allErrs, field.Invalid(idxPath.Child("subPath"), mnt.SubPath, "not allowed in image volume sources"))
			}
			if len(mnt.SubPathExpr) != 0 {
				allErrs = append(allErrs, field.Invalid(idxPath.Child("subPathExpr"), mnt.SubPathExpr, "not allowed in image volume sources"))
			}
		}
		if len(mnt.SubPath) > 0 {
			allErrs = append(allErrs, coreValidateLocalDescendingPath(mnt.SubPath, fldPath.Child("subPath"))...)
		}
		if len(mnt.SubPathExpr) > 0 {
			if len(mnt.SubPath) > 0 {
				allErrs = append(allErrs, field.Invalid(idxPath.Child("subPathExpr"), mnt.SubPathExpr, "subPathExpr and subPath are mutually exclusive"))
			}
			allErrs = append(allErrs, coreValidateLocalDescendingPath(mnt.SubPathExpr, fldPath.Child("subPathExpr"))...)
		}
		if mp := mnt.MountPropagation; mp != nil {
			p := fldPath.Child("mountPropagation")
			switch *mp {
			case corev1.MountPropagationBidirectional, corev1.MountPropagationHostToContainer, corev1.MountPropagationNone:
			default:
				allErrs = append(allErrs, field.NotSupported(p, *mp, coreMountPropagations))
			}
			privileged := ctr != nil && ctr.SecurityContext != nil && ctr.SecurityContext.Privileged != nil && *ctr.SecurityContext.Privileged
			if ctr != nil && *mp == corev1.MountPropagationBidirectional && !privileged {
				allErrs = append(allErrs, field.Forbidden(p, "Bidirectional mount propagation is available only to privileged containers"))
			}
		}
		if rro := mnt.RecursiveReadOnly; rro != nil {
			p := fldPath.Child("recursiveReadOnly")
			switch *rro {
			case corev1.RecursiveReadOnlyDisabled:
			case corev1.RecursiveReadOnlyEnabled, corev1.RecursiveReadOnlyIfPossible:
				if !mnt.ReadOnly {
					allErrs = append(allErrs, field.Forbidden(p, "may only be specified when readOnly is true"))
				}
				if mnt.MountPropagation != nil && *mnt.MountPropagation != corev1.MountPropagationNone {
					allErrs = append(allErrs, field.Forbidden(p, "may only be specified when mountPropagation is None or not specified"))
				}
			default:
				allErrs = append(allErrs, field.NotSupported(p, *rro, []corev1.RecursiveReadOnlyMode{
					corev1.RecursiveReadOnlyDisabled, corev1.RecursiveReadOnlyEnabled, corev1.RecursiveReadOnlyIfPossible}))
			}
		}
	}
	return allErrs
}

// coreValidateVolumeDevices is ValidateVolumeDevices.
func coreValidateVolumeDevices(devices []corev1.VolumeDevice, mounts map[string]string, vols map[string]corev1.VolumeSource, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	devicePaths, deviceNames := sets.New[string](), sets.New[string]()
	for i, dev := range devices {
		idxPath := fldPath.Index(i)
		src, matched := vols[dev.Name]
		isPVC := matched && (src.PersistentVolumeClaim != nil || src.Ephemeral != nil)
		if len(dev.Name) == 0 {
			allErrs = append(allErrs, field.Required(idxPath.Child("name"), ""))
		}
		if deviceNames.Has(dev.Name) {
			allErrs = append(allErrs, field.Invalid(idxPath.Child("name"), dev.Name, "must be unique"))
		}
		if matched && !isPVC {
			allErrs = append(allErrs, field.Invalid(idxPath.Child("name"), dev.Name, "can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode"))
		}
		if !matched {
			allErrs = append(allErrs, field.NotFound(idxPath.Child("name"), dev.Name))
		}
		if len(dev.DevicePath) == 0 {
			allErrs = append(allErrs, field.Required(idxPath.Child("devicePath"), ""))
		}
		if devicePaths.Has(dev.DevicePath) {
			allErrs = append(allErrs, field.Invalid(idxPath.Child("devicePath"), dev.DevicePath, "must be unique"))
		}
		if len(dev.DevicePath) > 0 && len(coreValidatePathNoBacksteps(dev.DevicePath, fldPath.Child("devicePath"))) > 0 {
			allErrs = append(allErrs, field.Invalid(idxPath.Child("devicePath"), dev.DevicePath, "can not contain backsteps ('..')"))
		} else {
			devicePaths.Insert(dev.DevicePath)
		}
		if _, ok := mounts[dev.Name]; ok {
			allErrs = append(allErrs, field.Invalid(idxPath.Child("name"), dev.Name, "must not already exist in volumeMounts"))
		}
		for _, mp := range mounts {
			if mp == dev.DevicePath {
				allErrs = append(allErrs, field.Invalid(idxPath.Child("devicePath"), dev.DevicePath, "must not already exist as a path in volumeMounts"))
				break
			}
		}
		if len(dev.Name) > 0 {
			deviceNames.Insert(dev.Name)
		}
	}
	return allErrs
}
