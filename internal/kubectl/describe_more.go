package kubectl

import (
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func init() {
	describers["Secret"] = describeSecretObject
	describers["ServiceAccount"] = describeServiceAccountObject
	describers["discovery.k8s.io/EndpointSlice"] = describeEndpointSliceObject
}

// describeSecretObject prints sizes, never values, except a service
// account token's. Upstream walks the data map in random order; sorted
// keys are one of its outputs.
func describeSecretObject(_ *describeCtx, u *unstructured.Unstructured) (string, error) {
	sec := &corev1.Secret{}
	if err := fromUnstructured(u, sec); err != nil {
		return "", err
	}
	return tabbedString(func(w *prefixWriter) error {
		w.Write(level0, "Name:\t%s\n", sec.Name)
		w.Write(level0, "Namespace:\t%s\n", sec.Namespace)
		printLabelsMultiline(w, "Labels", sec.Labels)
		printAnnotationsMultiline(w, "Annotations", sec.Annotations)
		w.Write(level0, "\nType:\t%s\n", sec.Type)
		w.Write(level0, "\nData\n====\n")
		keys := make([]string, 0, len(sec.Data))
		for k := range sec.Data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if k == corev1.ServiceAccountTokenKey && sec.Type == corev1.SecretTypeServiceAccountToken {
				w.Write(level0, "%s:\t%s\n", k, string(sec.Data[k]))
			} else {
				w.Write(level0, "%s:\t%d bytes\n", k, len(sec.Data[k]))
			}
		}
		return nil
	})
}

func describeServiceAccountObject(d *describeCtx, u *unstructured.Unstructured) (string, error) {
	sa := &corev1.ServiceAccount{}
	if err := fromUnstructured(u, sa); err != nil {
		return "", err
	}
	// Token secrets are the service-account-token secrets naming this
	// account and its UID; referenced secrets that do not exist are marked.
	var tokens []string
	missing := map[string]bool{}
	if secrets, err := d.cs.CoreV1().Secrets(sa.Namespace).List(d.e.ctx, metav1.ListOptions{}); err == nil {
		existing := map[string]bool{}
		for _, s := range secrets.Items {
			if s.Type == corev1.SecretTypeServiceAccountToken && s.Annotations[corev1.ServiceAccountNameKey] == sa.Name &&
				s.Annotations[corev1.ServiceAccountUIDKey] == string(sa.UID) {
				tokens = append(tokens, s.Name)
			}
			existing[s.Name] = true
		}
		for _, s := range sa.Secrets {
			missing[s.Name] = !existing[s.Name]
		}
		for _, s := range sa.ImagePullSecrets {
			missing[s.Name] = !existing[s.Name]
		}
	}
	events := d.events(eventRef{kind: "ServiceAccount", namespace: sa.Namespace, name: sa.Name, uid: sa.UID})
	return tabbedString(func(w *prefixWriter) error {
		w.Write(level0, "Name:\t%s\n", sa.Name)
		w.Write(level0, "Namespace:\t%s\n", sa.Namespace)
		printLabelsMultiline(w, "Labels", sa.Labels)
		printAnnotationsMultiline(w, "Annotations", sa.Annotations)
		var pull, mount []string
		for _, s := range sa.ImagePullSecrets {
			pull = append(pull, s.Name)
		}
		for _, s := range sa.Secrets {
			mount = append(mount, s.Name)
		}
		const empty = "                   "
		for _, h := range []struct {
			header string
			names  []string
		}{{"Image pull secrets:", pull}, {"Mountable secrets: ", mount}, {"Tokens:            ", tokens}} {
			if len(h.names) == 0 {
				w.Write(level0, "%s\t<none>\n", h.header)
				continue
			}
			prefix := h.header
			for _, n := range h.names {
				if missing[n] {
					w.Write(level0, "%s\t%s (not found)\n", prefix, n)
				} else {
					w.Write(level0, "%s\t%s\n", prefix, n)
				}
				prefix = empty
			}
		}
		describeEvents(events, w)
		return nil
	})
}

func describeEndpointSliceObject(d *describeCtx, u *unstructured.Unstructured) (string, error) {
	eps := &discoveryv1.EndpointSlice{}
	if err := fromUnstructured(u, eps); err != nil {
		return "", err
	}
	events := d.events(eventRef{kind: "EndpointSlice", namespace: eps.Namespace, name: eps.Name, uid: eps.UID})
	return tabbedString(func(w *prefixWriter) error {
		w.Write(level0, "Name:\t%s\n", eps.Name)
		w.Write(level0, "Namespace:\t%s\n", eps.Namespace)
		printLabelsMultiline(w, "Labels", eps.Labels)
		printAnnotationsMultiline(w, "Annotations", eps.Annotations)
		w.Write(level0, "AddressType:\t%s\n", string(eps.AddressType))
		if len(eps.Ports) == 0 {
			w.Write(level0, "Ports: <unset>\n")
		} else {
			w.Write(level0, "Ports:\n")
			w.Write(level1, "Name\tPort\tProtocol\n")
			w.Write(level1, "----\t----\t--------\n")
			for _, p := range eps.Ports {
				name := "<unset>"
				if p.Name != nil && *p.Name != "" {
					name = *p.Name
				}
				num := "<unset>"
				if p.Port != nil {
					num = strconv.Itoa(int(*p.Port))
				}
				w.Write(level1, "%s\t%s\t%s\n", name, num, ptrOr(p.Protocol, ""))
			}
		}
		if len(eps.Endpoints) == 0 {
			w.Write(level0, "Endpoints: <none>\n")
		} else {
			w.Write(level0, "Endpoints:\n")
			for i := range eps.Endpoints {
				ep := &eps.Endpoints[i]
				w.Write(level1, "- Addresses:\t%s\n", stringOrNone(strings.Join(ep.Addresses, ", ")))
				w.Write(level2, "Conditions:\n")
				ready := "<unset>"
				if ep.Conditions.Ready != nil {
					ready = strconv.FormatBool(*ep.Conditions.Ready)
				}
				w.Write(level3, "Ready:\t%s\n", ready)
				w.Write(level2, "Hostname:\t%s\n", ptrOr(ep.Hostname, "<unset>"))
				if ep.TargetRef != nil {
					w.Write(level2, "TargetRef:\t%s/%s\n", ep.TargetRef.Kind, ep.TargetRef.Name)
				}
				w.Write(level2, "NodeName:\t%s\n", ptrOr(ep.NodeName, "<unset>"))
				w.Write(level2, "Zone:\t%s\n", ptrOr(ep.Zone, "<unset>"))
			}
		}
		describeEvents(events, w)
		return nil
	})
}
