package network

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func mustPrefix(t *testing.T, s string) netip.Prefix {
	t.Helper()
	p, err := netip.ParsePrefix(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestIPAMRangeAndIdempotence(t *testing.T) {
	dir := t.TempDir()
	a, err := NewIPAM(dir, mustPrefix(t, "10.244.3.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Gateway().String(); got != "10.244.3.1" {
		t.Fatalf("gateway %s", got)
	}
	ip1, err := a.Allocate("uid-a")
	if err != nil {
		t.Fatal(err)
	}
	if ip1.String() != "10.244.3.2" {
		t.Fatalf("first address %s, want 10.244.3.2", ip1)
	}
	again, err := a.Allocate("uid-a")
	if err != nil || again != ip1 {
		t.Fatalf("re-allocate: %v %v, want %v", again, err, ip1)
	}
	ip2, err := a.Allocate("uid-b")
	if err != nil || ip2 == ip1 {
		t.Fatalf("second: %v %v", ip2, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, ip1.String()))
	if err != nil || strings.TrimSpace(string(b)) != "uid-a" {
		t.Fatalf("state file: %q %v", b, err)
	}
	// A new allocator on the same directory sees the allocations.
	a2, err := NewIPAM(dir, mustPrefix(t, "10.244.3.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	if ip, ok, err := a2.Lookup("uid-b"); err != nil || !ok || ip != ip2 {
		t.Fatalf("lookup after reopen: %v %v %v", ip, ok, err)
	}
	if ip, err := a2.Allocate("uid-a"); err != nil || ip != ip1 {
		t.Fatalf("allocate after reopen: %v %v", ip, err)
	}
	ip3, err := a2.Allocate("uid-c")
	if err != nil || ip3 == ip1 || ip3 == ip2 {
		t.Fatalf("third after reopen: %v %v", ip3, err)
	}
	if err := a2.Release("uid-a"); err != nil {
		t.Fatal(err)
	}
	if err := a2.Release("uid-a"); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if _, ok, _ := a2.Lookup("uid-a"); ok {
		t.Fatal("uid-a still allocated")
	}
	if _, err := os.Stat(filepath.Join(dir, ip1.String())); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state file after release: %v", err)
	}
}

func TestIPAMExhaustion(t *testing.T) {
	// /29: .0 network, .1 gateway, .7 broadcast → .2-.6 = 5 addresses.
	a, err := NewIPAM(t.TempDir(), mustPrefix(t, "198.51.100.8/29"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Addr]bool{}
	for i := range 5 {
		ip, err := a.Allocate(fmt.Sprintf("pod-%d", i))
		if err != nil {
			t.Fatalf("allocate %d: %v", i, err)
		}
		if seen[ip] || ip.String() == "198.51.100.8" || ip.String() == "198.51.100.9" || ip.String() == "198.51.100.15" {
			t.Fatalf("bad or duplicate address %v", ip)
		}
		seen[ip] = true
	}
	if _, err := a.Allocate("pod-x"); !errors.Is(err, ErrExhausted) {
		t.Fatalf("6th allocation: %v, want ErrExhausted", err)
	}
	// Existing owners still get their address when full.
	if _, err := a.Allocate("pod-3"); err != nil {
		t.Fatalf("idempotent allocate when full: %v", err)
	}
	if err := a.Release("pod-2"); err != nil {
		t.Fatal(err)
	}
	ip, err := a.Allocate("pod-x")
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	if ip.String() != "198.51.100.12" {
		t.Fatalf("got %v, want the freed 198.51.100.12", ip)
	}
}

func TestIPAMNoImmediateReuse(t *testing.T) {
	a, err := NewIPAM(t.TempDir(), mustPrefix(t, "10.244.0.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	ip1, _ := a.Allocate("a")
	if err := a.Release("a"); err != nil {
		t.Fatal(err)
	}
	ip2, err := a.Allocate("b")
	if err != nil || ip2 == ip1 {
		t.Fatalf("freed address handed out at once: %v %v", ip2, err)
	}
}

func TestIPAMReconcile(t *testing.T) {
	dir := t.TempDir()
	a, err := NewIPAM(dir, mustPrefix(t, "10.244.1.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	ips := map[string]netip.Addr{}
	for _, id := range []string{"a", "b", "c", "d"} {
		ip, err := a.Allocate(id)
		if err != nil {
			t.Fatal(err)
		}
		ips[id] = ip
	}
	// Junk and leftovers are ignored; an address outside the CIDR is not touched.
	if err := os.WriteFile(filepath.Join(dir, "10.244.9.5"), []byte("zzz\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	live := map[string]bool{"b": true, "d": true}
	freed, err := a.Reconcile(func(id string) bool { return live[id] })
	if err != nil {
		t.Fatal(err)
	}
	if len(freed) != 2 || freed[0] != ips["a"] || freed[1] != ips["c"] {
		t.Fatalf("freed %v, want [%v %v]", freed, ips["a"], ips["c"])
	}
	got, err := a.Allocated()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[ips["b"]] != "b" || got[ips["d"]] != "d" {
		t.Fatalf("after reconcile: %v", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "10.244.9.5")); err != nil {
		t.Fatalf("foreign file removed: %v", err)
	}
}

func TestIPAMConcurrentDistinct(t *testing.T) {
	dir := t.TempDir()
	p := mustPrefix(t, "10.244.2.0/24")
	// Two allocators on one directory (as two processes would be) never share an address.
	a1, err := NewIPAM(dir, p)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := NewIPAM(dir, p)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	owner := map[netip.Addr]string{}
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := a1
			if i%2 == 1 {
				a = a2
			}
			id := fmt.Sprintf("pod-%d", i)
			ip, err := a.Allocate(id)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if prev, ok := owner[ip]; ok {
				t.Errorf("%v given to %s and %s", ip, prev, id)
			}
			owner[ip] = id
		}()
	}
	wg.Wait()
}

func TestIPAMInvalid(t *testing.T) {
	for _, tc := range []struct {
		dir, cidr string
	}{
		{"", "10.244.0.0/24"},
		{"x", "10.244.0.0/31"},
		{"x", "fd00::/64"},
	} {
		dir := tc.dir
		if dir != "" {
			dir = t.TempDir()
		}
		if _, err := NewIPAM(dir, mustPrefix(t, tc.cidr)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q %s: %v, want ErrInvalid", tc.dir, tc.cidr, err)
		}
	}
	a, err := NewIPAM(t.TempDir(), mustPrefix(t, "10.244.0.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Allocate(""); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty id: %v", err)
	}
}
