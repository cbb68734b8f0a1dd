package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestBadServerFlagsExitTwoWithAMessage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"server", "--https-listen-port", "0"}, "--https-listen-port 0"},
		{[]string{"server", "--service-cidr", "nope"}, "--service-cidr"},
		{[]string{"server", "--write-kubeconfig-mode", "rw"}, "--write-kubeconfig-mode"},
		{[]string{"server", "--pod-network", "wireguard"}, `--pod-network "wireguard": want vxlan or host-gw`},
		{[]string{"server", "--lb-ip-pool", "10.43.0.0/24"}, "--lb-ip-pool 10.43.0.0/24 overlaps --service-cidr"},
		{[]string{"server", "extra"}, `unexpected argument "extra"`},
	} {
		var out, errOut bytes.Buffer
		// Should validation ever let one through, keep the server off the
		// real data dir, kubeconfig and port.
		safe := []string{"--data-dir", t.TempDir(), "--write-kubeconfig", t.TempDir() + "/kc", "--bind-address", "127.0.0.1"}
		args := append([]string{"skiff", tc.args[0]}, safe...)
		args = append(args, tc.args[1:]...)
		code := Main(args, strings.NewReader(""), &out, &errOut)
		if code != 2 || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: code %d stderr %q, want 2 and %q", tc.args, code, errOut.String(), tc.want)
		}
	}
}

func TestKubectlErrorsExitOne(t *testing.T) {
	var out, errOut bytes.Buffer
	code := Main([]string{"skiff", "kubectl", "--kubeconfig", "/nonexistent/kubeconfig", "get", "pods"}, strings.NewReader(""), &out, &errOut)
	if code != 1 || errOut.Len() == 0 {
		t.Fatalf("code %d stderr %q", code, errOut.String())
	}
}
