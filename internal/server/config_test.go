package server

import (
	"strings"
	"testing"
)

func TestConfigResolve(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"defaults", func(*Config) {}, ""},
		{"port zero", func(c *Config) { c.HTTPSPort = -1 }, "--https-listen-port -1"},
		{"port too big", func(c *Config) { c.HTTPSPort = 70000 }, "--https-listen-port 70000"},
		{"bind not IP", func(c *Config) { c.BindAddress = "example.com" }, `--bind-address "example.com"`},
		{"service cidr garbage", func(c *Config) { c.ServiceCIDR = "10.43.0.0" }, "--service-cidr"},
		{"service cidr too small", func(c *Config) { c.ServiceCIDR = "10.43.0.0/31" }, "--service-cidr"},
		{"service cidr v6", func(c *Config) { c.ServiceCIDR = "fd00::/108" }, "--service-cidr"},
		{"cluster dns outside", func(c *Config) { c.ClusterDNS = "10.44.0.10" }, "--cluster-dns"},
		{"node ports reversed", func(c *Config) { c.NodePortRange = "32767-30000" }, "--service-node-port-range"},
		{"node ports word", func(c *Config) { c.NodePortRange = "many" }, "--service-node-port-range"},
		{"node ip", func(c *Config) { c.NodeIP = "not-an-ip" }, "--node-ip"},
		{"datastore", func(c *Config) { c.DatastoreEndpoint = "https://127.0.0.1:2379" }, "--datastore-endpoint"},
		{"host-gw", func(c *Config) { c.PodNetwork = "host-gw" }, ""},
		{"pod network unknown", func(c *Config) { c.PodNetwork = "wireguard" }, `--pod-network "wireguard": want vxlan or host-gw`},
		{"lb pool", func(c *Config) { c.LBIPPool = "198.51.100.0/28" }, ""},
		{"lb pool garbage", func(c *Config) { c.LBIPPool = "198.51.100.0" }, "--lb-ip-pool"},
		{"lb pool v6", func(c *Config) { c.LBIPPool = "fd00::/120" }, "--lb-ip-pool"},
		{"lb pool in service cidr", func(c *Config) { c.LBIPPool = "10.43.200.0/24" }, "--lb-ip-pool 10.43.200.0/24 overlaps --service-cidr"},
		{"lb pool in cluster cidr", func(c *Config) { c.LBIPPool = "10.0.0.0/8" }, "overlaps"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{}
			tc.mutate(&c)
			c.setDefaults()
			r, err := c.resolve()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if r.apiServiceIP.String() != "10.43.0.1" || r.nodePortFirst != 30000 || r.nodePortLast != 32767 || r.nodeName == "" {
					t.Fatalf("resolved %+v", r)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestTokenFileIsStableAndPinsCA(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Config{DataDir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ca := []byte("ca-one")
	tok1, err := s.loadOrCreateToken(ca)
	if err != nil {
		t.Fatal(err)
	}
	tok2, err := s.loadOrCreateToken(ca)
	if err != nil || tok1 != tok2 {
		t.Fatalf("token changed: %q %q %v", tok1, tok2, err)
	}
	if !strings.HasPrefix(tok1, "K10") || !strings.Contains(tok1, "::server:") {
		t.Fatalf("token %q", tok1)
	}
	// A given token for another CA is refused.
	s2, _ := New(Config{DataDir: dir, Token: tok1}, nil)
	if _, err := s2.loadOrCreateToken([]byte("ca-two")); err == nil {
		t.Fatal("a token pinning another CA must be refused")
	}
	// A bare secret is adopted into a full token.
	s3, _ := New(Config{DataDir: t.TempDir(), Token: "mysecret"}, nil)
	tok3, err := s3.loadOrCreateToken(ca)
	if err != nil || !strings.HasSuffix(tok3, "::server:mysecret") {
		t.Fatalf("bare secret: %q %v", tok3, err)
	}
}
