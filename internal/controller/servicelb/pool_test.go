package servicelb

import (
	"errors"
	"net/netip"
	"testing"
)

func TestPoolRangeAndAllocation(t *testing.T) {
	for _, tc := range []struct {
		cidr, first, last string
	}{
		{"203.0.113.0/30", "203.0.113.1", "203.0.113.2"},
		{"203.0.113.7/24", "203.0.113.1", "203.0.113.254"},
		{"203.0.113.4/31", "203.0.113.4", "203.0.113.5"},
		{"203.0.113.9/32", "203.0.113.9", "203.0.113.9"},
	} {
		p, err := newPool(netip.MustParsePrefix(tc.cidr))
		if err != nil {
			t.Fatal(err)
		}
		if p.first.String() != tc.first || p.last.String() != tc.last {
			t.Errorf("%s: range %s-%s, want %s-%s", tc.cidr, p.first, p.last, tc.first, tc.last)
		}
	}
	if _, err := newPool(netip.MustParsePrefix("fd00::/120")); err == nil {
		t.Error("IPv6 pool accepted")
	}

	p, _ := newPool(netip.MustParsePrefix("203.0.113.0/30"))
	if err := p.take("ns/b", netip.MustParseAddr("203.0.113.2")); err != nil {
		t.Fatal(err)
	}
	if err := p.take("ns/c", netip.MustParseAddr("203.0.113.2")); err == nil {
		t.Fatal("an address was given twice")
	}
	if err := p.take("ns/c", netip.MustParseAddr("203.0.113.3")); err == nil {
		t.Fatal("the broadcast address was given out")
	}
	if ip, err := p.next("ns/a"); err != nil || ip.String() != "203.0.113.1" {
		t.Fatalf("next = %s, %v", ip, err)
	}
	if _, err := p.next("ns/c"); !errors.Is(err, errPoolExhausted) {
		t.Fatalf("full pool: %v", err)
	}
	if !p.release("ns/a") || p.release("ns/a") {
		t.Fatal("release should report the first release only")
	}
	if ip, err := p.next("ns/c"); err != nil || ip.String() != "203.0.113.1" {
		t.Fatalf("after release next = %s, %v", ip, err)
	}
	// Taking another address moves the key, freeing its old one.
	if err := p.take("ns/c", netip.MustParseAddr("203.0.113.1")); err != nil {
		t.Fatal(err)
	}
	if p.owner(netip.MustParseAddr("203.0.113.1")) != "ns/c" {
		t.Fatal("owner lost")
	}
}
