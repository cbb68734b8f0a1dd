package registry

import (
	"context"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// FuzzServiceStrategy runs arbitrary Service JSON through defaulting,
// validation, allocation, update and printing: none of it may panic.
func FuzzServiceStrategy(f *testing.F) {
	for _, seed := range []string{
		`{"metadata":{"name":"a","namespace":"default"},"spec":{"ports":[{"port":80}]}}`,
		`{"metadata":{"name":"a"},"spec":{"type":"NodePort","clusterIP":"None","clusterIPs":["None","10.43.0.1"],"ports":[{"port":53,"nodePort":30053},{"port":53,"protocol":"UDP"}]}}`,
		`{"metadata":{"name":"a"},"spec":{"type":"LoadBalancer","externalTrafficPolicy":"Local","healthCheckNodePort":30000,"ipFamilies":["IPv6","IPv4"],"ipFamilyPolicy":"PreferDualStack"}}`,
		`{"metadata":{"name":"a"},"spec":{"type":"ExternalName","externalName":"x.","clusterIPs":["1.2.3.4"]},"status":{"loadBalancer":{"ingress":[{"ip":"x"}]}}}`,
		`{"metadata":{"name":"a"},"spec":{"clusterIP":"10.43.0.0","clusterIPs":["10.43.0.0","fd00::1","1.1.1.1"],"sessionAffinity":"ClientIP","sessionAffinityConfig":{}}}`,
	} {
		f.Add([]byte(seed), []byte(`{"metadata":{"name":"a"},"spec":{"type":"NodePort","ports":[{"port":80}]}}`))
	}
	r, err := services(Config{ServiceCIDR: netip.MustParsePrefix("10.43.0.0/28"), NodePortFirst: 30000, NodePortLast: 30004})
	if err != nil {
		f.Fatal(err)
	}
	s := r.Strategy.(*serviceStrategy)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var old, svc corev1.Service
		if json.Unmarshal(a, &old) != nil || json.Unmarshal(b, &svc) != nil {
			return
		}
		s.Default(&old)
		s.PrepareForCreate(ctx, &old)
		s.TableRow(&old, time.Now())
		if len(s.Validate(ctx, &old)) > 0 {
			return
		}
		undo, err := s.BeforeCreate(ctx, &old, false)
		if err != nil {
			return
		}
		_ = undo
		stored := &old
		defer func() {
			// Whatever happened to the update, deleting the stored object
			// must leave the allocator empty: nothing leaks.
			s.AfterDelete(ctx, stored)
			if ips, ports := s.alloc.usedCounts(); ips != 0 || ports != 0 {
				t.Fatalf("leak: %d IPs, %d ports held after delete", ips, ports)
			}
		}()
		s.Default(&svc)
		s.PrepareForUpdate(ctx, &svc, &old)
		s.ValidateStatusUpdate(ctx, &svc, &old)
		s.TableRow(&svc, time.Now())
		if len(s.ValidateUpdate(ctx, &svc, &old)) > 0 {
			return
		}
		commit, undo2, err := s.BeforeUpdate(ctx, &svc, &old, false)
		if err != nil {
			return
		}
		if len(a)%2 == 0 {
			undo2()
		} else {
			commit()
			stored = &svc
		}
	})
}

// FuzzNetStrategies does the same for the other resources of this file set.
func FuzzNetStrategies(f *testing.F) {
	f.Add([]byte(`{"metadata":{"name":"a"},"subsets":[{"addresses":[{"ip":"10.0.0.1"}],"ports":[{"port":1},{}]}]}`))
	f.Add([]byte(`{"metadata":{"name":"a"},"addressType":"IPv4","endpoints":[{"addresses":["x"],"hints":{"forZones":[{"name":"a"}]}}],"ports":[{}]}`))
	f.Add([]byte(`{"metadata":{"name":"a"},"spec":{"rules":[{"host":"*.a","http":{"paths":[{"path":"x","pathType":"Exact","backend":{"resource":{"kind":"..","name":"/"}}}]}}],"tls":[{"hosts":["*"]}]}}`))
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, r := range []*Resource{endpoints(), endpointSlices(), ingresses(), ingressClasses(), leases()} {
			obj := r.New()
			if json.Unmarshal(data, obj) != nil {
				continue
			}
			st := r.Strategy
			st.Default(obj)
			st.PrepareForCreate(ctx, obj)
			st.Validate(ctx, obj)
			st.TableRow(obj, time.Now())
			upd := r.New()
			_ = json.Unmarshal(data, upd)
			st.PrepareForUpdate(ctx, upd, obj)
			st.ValidateUpdate(ctx, upd, obj)
			st.ValidateStatusUpdate(ctx, upd, obj)
		}
	})
}
