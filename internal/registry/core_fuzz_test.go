package registry

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FuzzCoreStrategies feeds arbitrary JSON through what the apiserver does
// with a core/v1 body: default, prepare, validate (create, update, status),
// print, select, delete. None of it may panic.
func FuzzCoreStrategies(f *testing.F) {
	for _, seed := range []string{
		`{}`,
		`{"metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"i","ports":[{"containerPort":-1,"hostPort":99999}],"env":[{"name":"x","valueFrom":{"fieldRef":{"fieldPath":"metadata.labels['a']"},"resourceFieldRef":{"resource":"limits.cpu","divisor":"3"}}}],"resources":{"limits":{"hugepages-2Mi":"1Mi","example.com/gpu":"1.5"},"requests":{"cpu":"-1"}}}],"initContainers":[{"name":"i","restartPolicy":"Always","startupProbe":{"grpc":{"port":0}}}],"volumes":[{"name":"v","projected":{"sources":[{"serviceAccountToken":{"path":"/abs","expirationSeconds":1}},{"downwardAPI":{"items":[{"path":"../x"}]}}]}},{"name":"w","hostPath":{"path":"/..","type":"Bad"},"nfs":{}}]}}`,
		`{"spec":{"hostNetwork":true,"dnsPolicy":"None","dnsConfig":{"nameservers":["x","1.1.1.1","2.2.2.2","3.3.3.3"],"searches":["..", "a."]},"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchFields":[{"key":"x","operator":"Gt"}]}]}},"podAntiAffinity":{"preferredDuringSchedulingIgnoredDuringExecution":[{"weight":0,"podAffinityTerm":{}}]}},"topologySpreadConstraints":[{"maxSkew":0,"minDomains":0}],"securityContext":{"sysctls":[{"name":""},{"name":"a..b"}],"seccompProfile":{"type":"Localhost"}}}}`,
		`{"status":{"podIPs":[{"ip":"x"},{"ip":"x"}],"hostIP":"1.2.3.4","hostIPs":[{"ip":"5.6.7.8"}],"containerStatuses":[{"name":"a","state":{"terminated":{"exitCode":0}}}],"initContainerStatuses":[{"name":"i","state":{"waiting":{}}}]}}`,
		`{"spec":{"podCIDRs":["10.0.0.0/8","10.0.0.0/8","fd00::/64"],"taints":[{"key":"","effect":""}]},"status":{"capacity":{"cpu":"-1"},"conditions":[{"type":"Ready"}]}}`,
		// Not a Namespace (spec.finalizers is a list) but a fine Pod.
		`{"metadata":{"name":"p"},"spec":{"finalizers":7,"containers":[{"name":"c","image":"after-namespace"}]}}`,
		`{"type":"kubernetes.io/dockerconfigjson","data":{".dockerconfigjson":"e30="},"stringData":{"a":"b"},"involvedObject":{"namespace":"x"},"eventTime":"2026-01-01T00:00:00.000000Z","series":{"count":1}}`,
	} {
		f.Add([]byte(seed))
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, r := range []*Resource{namespaces(), pods(), nodes(), events(), configMaps(), secrets(), serviceAccounts()} {
			obj, old := r.New(), r.New()
			if json.Unmarshal(data, obj) != nil {
				continue // the next resource may still take it
			}
			_ = json.Unmarshal(data, old)
			s := r.Strategy
			s.Default(obj)
			s.Default(old)
			s.PrepareForCreate(ctx, obj)
			s.Validate(ctx, obj)
			s.ValidateUpdate(ctx, obj, old)
			s.ValidateStatusUpdate(ctx, obj, old)
			s.PrepareForUpdate(ctx, obj, old)
			s.PrepareForStatusUpdate(ctx, obj, old)
			s.TableRow(obj, time.Now())
			s.SelectableFields(obj)
			if g, ok := s.(GracefulDeleter); ok {
				g.GracePeriod(obj, &metav1.DeleteOptions{})
			}
			if fs, ok := s.(FinalizeStrategy); ok {
				fs.PrepareForFinalize(ctx, obj, old)
				fs.ValidateFinalize(ctx, obj, old)
			}
		}
	})
}
