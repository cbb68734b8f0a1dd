package proxy

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// manyServices returns n ClusterIP services with two endpoints each; the
// first service's second endpoint is alt (so two calls differ in one endpoint).
func manyServices(n int, alt string) ([]*corev1.Service, []*discoveryv1.EndpointSlice) {
	svcs := make([]*corev1.Service, 0, n)
	sls := make([]*discoveryv1.EndpointSlice, 0, n)
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("svc-%d", i)
		vip := fmt.Sprintf("10.244.%d.%d", 100+i/250, 1+i%250) // service range inside 10.244.0.0/16
		svcs = append(svcs, svc("bench", name, vip, port("http", 80, 0)))
		second := fmt.Sprintf("10.244.%d.%d", 50+i/250, 1+i%250)
		if i == 0 {
			second = alt
		}
		sls = append(sls, slice("bench", name, "http", 8080, ep("10.244.1.10", true), ep(second, true)))
	}
	return svcs, sls
}

// BenchmarkApplyEndpointChange: the time for Apply to move one endpoint of
// one service with n services programmed (the kernel work included: one
// netlink batch into a test namespace). "build+apply" includes Build;
// "fullsync" replaces the whole table in one batch.
func BenchmarkApplyEndpointChange(b *testing.B) {
	requireRoot(b)
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			ns := newNS(b)
			conn := ns.nft(b)
			s := NewSyncer(Options{})
			sa, la := manyServices(n, "10.244.9.1")
			sb, lb := manyServices(n, "10.244.9.2")
			rs := [2]*Ruleset{Build(sa, la, Options{}), Build(sb, lb, Options{})}
			if err := s.FullSync(conn, rs[0]); err != nil {
				b.Fatal(err)
			}
			b.Run("apply", func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					if err := s.Apply(conn, rs[(i+1)%2]); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("build+apply", func(b *testing.B) {
				in := [2][2]any{{sa, la}, {sb, lb}}
				for i := 0; b.Loop(); i++ {
					x := in[i%2]
					if err := s.Apply(conn, Build(x[0].([]*corev1.Service), x[1].([]*discoveryv1.EndpointSlice), Options{})); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("fullsync", func(b *testing.B) {
				for b.Loop() {
					if err := s.FullSync(conn, rs[0]); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkCheck: one drift check with n services programmed: the chains,
// their rules (a request per chain, or one dump with Options.NetNS) and the
// four maps.
func BenchmarkCheck(b *testing.B) {
	requireRoot(b)
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			ns := newNS(b)
			conn := ns.nft(b)
			sa, la := manyServices(n, "10.244.9.1")
			rs := Build(sa, la, Options{})
			for _, mode := range []string{"per-chain", "dump"} {
				opts := Options{}
				if mode == "dump" {
					opts.NetNS = int(ns.h)
				} else if n > 1000 {
					continue // a request per chain: ~10 s per check at 10,000
				}
				s := NewSyncer(opts)
				if err := s.FullSync(conn, rs); err != nil {
					b.Fatal(err)
				}
				b.Run(mode, func(b *testing.B) {
					for b.Loop() {
						ok, err := s.Check(conn)
						if err != nil || !ok {
							b.Fatalf("Check: %v, %v", ok, err)
						}
					}
				})
			}
		})
	}
}

// BenchmarkBuild: Build alone (no kernel) for n services.
func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			sa, la := manyServices(n, "10.244.9.1")
			for b.Loop() {
				Build(sa, la, Options{})
			}
		})
	}
}
