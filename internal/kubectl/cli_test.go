package kubectl

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/liggitt/tabwriter"
)

func TestCommandIndex(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"get", "pods"}, 0},
		{[]string{"-n", "kube-system", "get", "pods"}, 2},
		{[]string{"--namespace=x", "get"}, 1},
		{[]string{"--kubeconfig", "/k", "-v", "6", "apply", "-f", "x"}, 4},
		{[]string{"-A"}, -1},
		{nil, -1},
	} {
		if got := commandIndex(tc.args); got != tc.want {
			t.Errorf("commandIndex(%q) = %d, want %d", tc.args, got, tc.want)
		}
	}
}

func TestRunUsageAndUnknownCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), nil, nil, &out, &errOut); err != nil || !strings.Contains(out.String(), "api-resources") {
		t.Errorf("no-args usage: err=%v out=%q", err, out.String())
	}
	out.Reset()
	err := Run(context.Background(), []string{"frobnicate"}, nil, &out, &errOut)
	if err == nil || errOut.String() != "error: unknown command \"frobnicate\" for \"kubectl\"\n" {
		t.Errorf("unknown command: err=%v stderr=%q", err, errOut.String())
	}
}

func TestMissingKubeconfig(t *testing.T) {
	var out, errOut bytes.Buffer
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	err := Run(context.Background(), []string{"get", "pods", "--kubeconfig", missing}, nil, &out, &errOut)
	if err == nil || !strings.Contains(errOut.String(), "nope.yaml") || !strings.HasPrefix(errOut.String(), "error: ") {
		t.Errorf("err=%v stderr=%q", err, errOut.String())
	}
}

// TestFlagsAfterArgs checks the kubectl habit the lead's SkipFlagParsing
// wiring relies on: global flags anywhere on the line.
func TestFlagsAfterArgs(t *testing.T) {
	f := newFakeServer(t)
	seed(f)
	kc := f.kubeconfig(t)
	a := runOurs(t, kc, "", "get", "pods", "-n", "kube-system", "-o", "name")
	b := runOurs(t, kc, "", "-n", "kube-system", "get", "-o", "name", "pods")
	if a.stdout != "pod/coredns-6799fbcd5-abcde\n" || a != b {
		t.Errorf("got %+v and %+v", a, b)
	}
}

// TestErrorMessages pins kubectl's wording for errors from the server.
func TestErrorMessages(t *testing.T) {
	invalid := apierrors.NewInvalid(schema.GroupKind{Kind: "Pod"}, "x", field.ErrorList{
		field.Required(field.NewPath("spec", "containers"), ""),
		field.Invalid(field.NewPath("metadata", "name"), "X", "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters"),
	})
	for _, tc := range []struct {
		err  error
		want string
	}{
		{apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, "x"), `Error from server (NotFound): pods "x" not found`},
		{apierrors.NewAlreadyExists(schema.GroupResource{Group: "apps", Resource: "deployments"}, "x"), `Error from server (AlreadyExists): deployments.apps "x" already exists`},
		{apierrors.NewUnauthorized("Unauthorized"), `error: You must be logged in to the server (Unauthorized)`},
		{invalid, "The Pod \"x\" is invalid: \n* spec.containers: Required value\n* metadata.name: Invalid value: \"X\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters\n"},
		{&apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Message: "boom"}}, "Error from server: boom"},
	} {
		if got := errorMessage(tc.err); got != tc.want {
			t.Errorf("errorMessage(%v) =\n%q\nwant\n%q", tc.err, got, tc.want)
		}
	}
}

// TestLastAppliedConfiguration pins the annotation kubectl computes: the
// manifest (namespace filled in) as compact JSON with sorted keys, an empty
// annotations map, HTML escaping and a trailing newline.
func TestLastAppliedConfiguration(t *testing.T) {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "c", "namespace": "default"},
		"data":     map[string]any{"k": "<a&b>"},
	}}
	if err := createApplyAnnotation(u); err != nil {
		t.Fatal(err)
	}
	got := u.GetAnnotations()["kubectl.kubernetes.io/last-applied-configuration"]
	want := `{"apiVersion":"v1","data":{"k":"\u003ca\u0026b\u003e"},"kind":"ConfigMap","metadata":{"annotations":{},"name":"c","namespace":"default"}}` + "\n"
	if got != want {
		t.Errorf("annotation =\n%q\nwant\n%q", got, want)
	}
	// Re-applying computes "modified" with the annotation embedded, and
	// leaves the object's own annotations as they were.
	mod, err := getModifiedConfiguration(u, true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mod), `"kubectl.kubernetes.io/last-applied-configuration":`) {
		t.Errorf("modified lacks the annotation: %s", mod)
	}
	if u.GetAnnotations()["kubectl.kubernetes.io/last-applied-configuration"] != want {
		t.Errorf("object's annotation was not restored")
	}
}

// TestTabwriterRememberWidths checks the flag kubectl's watch output needs.
func TestTabwriterRememberWidths(t *testing.T) {
	var buf bytes.Buffer
	w := tabwriter.NewWriter(&buf, 6, 4, 3, ' ', tabwriter.RememberWidths)
	w.Write([]byte("NAME\tSTATUS\tAGE\nlong-name-here\tOK\t1s\n"))
	w.Flush()
	w.Write([]byte("x\tRunning-a-while\t2s\n"))
	w.Flush()
	w.Write([]byte("y\tA\t3s\n"))
	w.Flush()
	want := "NAME             STATUS   AGE\n" +
		"long-name-here   OK       1s\n" +
		"x                Running-a-while   2s\n" +
		"y                A                 3s\n"
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
}
