package nodeipam

import (
	"errors"
	"net/netip"
	"testing"
)

func TestCIDRSetAllocatesInOrderAndExhausts(t *testing.T) {
	s, err := newCIDRSet(netip.MustParsePrefix("10.42.0.0/22"), 24)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.42.0.0/24", "10.42.1.0/24", "10.42.2.0/24", "10.42.3.0/24"}
	for _, w := range want {
		p, err := s.allocateNext()
		if err != nil || p.String() != w {
			t.Fatalf("allocateNext = %v, %v; want %s", p, err, w)
		}
	}
	if _, err := s.allocateNext(); !errors.Is(err, errCIDRRangeNoCIDRsRemaining) {
		t.Fatalf("exhausted set: err = %v", err)
	}
	if err := s.release(netip.MustParsePrefix("10.42.1.0/24")); err != nil {
		t.Fatal(err)
	}
	if p, err := s.allocateNext(); err != nil || p.String() != "10.42.1.0/24" {
		t.Fatalf("after release: %v, %v", p, err)
	}
}

func TestCIDRSetRoundRobin(t *testing.T) {
	s, _ := newCIDRSet(netip.MustParsePrefix("10.0.0.0/16"), 24)
	a, _ := s.allocateNext()
	_ = s.release(a)
	b, _ := s.allocateNext()
	if a == b {
		t.Fatalf("released subnet %s reused at once", a)
	}
}

func TestCIDRSetOccupy(t *testing.T) {
	tests := []struct {
		name    string
		occupy  string
		wantErr bool
		count   int
	}{
		{"one subnet", "10.42.3.0/24", false, 1},
		{"inside a subnet", "10.42.3.128/25", false, 1},
		{"several subnets", "10.42.4.0/22", false, 4},
		{"whole cluster", "10.0.0.0/8", false, 256},
		{"outside", "10.43.0.0/24", true, 0},
		{"other family", "fd00::/64", true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newCIDRSet(netip.MustParsePrefix("10.42.0.0/16"), 24)
			err := s.occupy(netip.MustParsePrefix(tt.occupy))
			if (err != nil) != tt.wantErr {
				t.Fatalf("occupy err = %v", err)
			}
			if s.count != tt.count {
				t.Fatalf("count = %d, want %d", s.count, tt.count)
			}
		})
	}
}

func TestCIDRSetIPv6(t *testing.T) {
	s, err := newCIDRSet(netip.MustParsePrefix("fd00:10:244::/56"), 64)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.occupy(netip.MustParsePrefix("fd00:10:244::/64"))
	p, err := s.allocateNext()
	if err != nil || p.String() != "fd00:10:244:1::/64" {
		t.Fatalf("allocateNext = %v, %v", p, err)
	}
}

func TestNewCIDRSetRejectsBadMasks(t *testing.T) {
	for _, tt := range []struct {
		cidr string
		mask int
	}{{"10.42.0.0/16", 8}, {"10.42.0.0/16", 33}, {"10.0.0.0/8", 25}} {
		if _, err := newCIDRSet(netip.MustParsePrefix(tt.cidr), tt.mask); err == nil {
			t.Errorf("newCIDRSet(%s, %d) succeeded", tt.cidr, tt.mask)
		}
	}
}
