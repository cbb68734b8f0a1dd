// Package kubectl is skiff's embedded Kubernetes client, `skiff kubectl`.
//
// It implements the everyday subset of kubectl (get, apply, create, delete,
// label, annotate, api-resources, describe, scale, rollout, logs, exec,
// attach, port-forward) on client-go's REST, typed and discovery clients
// rather than on k8s.io/kubectl and k8s.io/cli-runtime, which would make
// the binary several times larger. Output follows upstream kubectl 1.32
// byte for byte where the tests can check it: the table printer, the name
// printer, YAML/JSON printing, describe's sections and event tables,
// rollout messages and the errors.
//
// The streaming verbs use client-go's tools/remotecommand (exec, attach:
// WebSocket v5.channel.k8s.io first, SPDY when the upgrade fails, as
// kubectl ≥ 1.30; KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false forces SPDY) and
// tools/portforward (SPDY tunnelled over WebSocket first, plain SPDY as
// fallback; KUBECTL_PORT_FORWARD_WEBSOCKETS=false). With -t and a terminal
// on stdin the terminal is put in raw mode (golang.org/x/term) and its size
// is sent at the start and on every SIGWINCH. A remote command's non-zero
// exit status becomes Run's *ExitError Code, after "command terminated with
// exit code N" on stderr. A TYPE/NAME argument selects a pod as kubectl
// does: the most active pod for exec, attach and port-forward, the best
// pod to read for logs ("Found N pods, using pod/…"); the container
// defaults to the kubectl.kubernetes.io/default-container annotation, else
// the first, with kubectl's "Defaulted container" notice.
//
// Known differences: logs --all-containers, --all-pods and -l read
// containers and pods in spec/list order where kubectl follows Go map
// order; exec and attach end silently with code 130 when Run's context is
// cancelled (the skiff CLI cancels it on SIGINT/SIGTERM) where kubectl dies
// of the signal.
package kubectl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// DefaultKubeconfig is used when neither --kubeconfig nor $KUBECONFIG is set.
var DefaultKubeconfig = "/etc/skiff/skiff.yaml"

// ExitError is returned by Run when a command fails. Its message has
// already been written to stderr in kubectl's words, so callers should
// only exit with Code and not print it again.
type ExitError struct {
	Code    int
	Message string
}

func (e *ExitError) Error() string { return strings.TrimSpace(e.Message) }

// command is one kubectl subcommand.
type command struct {
	name  string
	short string
	flags func(fs *pflag.FlagSet) any // registers command flags, returns its options
	run   func(e *env, opts any, args []string) error
}

var commands []command

func register(c command) { commands = append(commands, c) }

func findCommand(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

// globalFlags are kubectl's connection flags, accepted by every command.
type globalFlags struct {
	kubeconfig string
	context    string
	cluster    string
	user       string
	namespace  string
	server     string
	token      string
	insecure   bool
	verbosity  string
	reqTimeout string
}

// globalValueFlags lists global flags that take a value, so Run can find
// the command name among arguments like `-n kube-system get pods`.
var globalValueFlags = map[string]bool{
	"--kubeconfig": true, "--context": true, "--cluster": true, "--user": true,
	"-n": true, "--namespace": true, "-s": true, "--server": true, "--token": true,
	"-v": true, "--v": true, "--request-timeout": true,
}

func addGlobalFlags(fs *pflag.FlagSet, g *globalFlags) {
	fs.StringVar(&g.kubeconfig, "kubeconfig", "", "Path to the kubeconfig file to use for CLI requests.")
	fs.StringVar(&g.context, "context", "", "The name of the kubeconfig context to use")
	fs.StringVar(&g.cluster, "cluster", "", "The name of the kubeconfig cluster to use")
	fs.StringVar(&g.user, "user", "", "The name of the kubeconfig user to use")
	fs.StringVarP(&g.namespace, "namespace", "n", "", "If present, the namespace scope for this CLI request")
	fs.StringVarP(&g.server, "server", "s", "", "The address and port of the Kubernetes API server")
	fs.StringVar(&g.token, "token", "", "Bearer token for authentication to the API server")
	fs.BoolVar(&g.insecure, "insecure-skip-tls-verify", false, "If true, the server's certificate will not be checked for validity.")
	fs.StringVarP(&g.verbosity, "v", "v", "0", "number for the log level verbosity (ignored)")
	fs.StringVar(&g.reqTimeout, "request-timeout", "0", "The length of time to wait before giving up on a single server request (ignored).")
}

// Run executes one kubectl command line (args exclude "kubectl"), e.g.
// []string{"get", "pods", "-n", "kube-system", "-o", "wide"}.
// The kubeconfig is --kubeconfig, else $KUBECONFIG, else DefaultKubeconfig.
// On failure the message is printed to stderr and an *ExitError returned.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	idx := commandIndex(args)
	if idx < 0 {
		if hasHelp(args) || len(args) == 0 {
			usage(stdout)
			return nil
		}
		return fail(stderr, fmt.Errorf("unknown command %q for \"kubectl\"", strings.Join(args, " ")))
	}
	cmd := findCommand(args[idx])
	if cmd == nil {
		return fail(stderr, fmt.Errorf("unknown command %q for \"kubectl\"", args[idx]))
	}
	rest := append(append([]string{}, args[:idx]...), args[idx+1:]...)

	fs := pflag.NewFlagSet("kubectl "+cmd.name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SetInterspersed(true)
	g := &globalFlags{}
	addGlobalFlags(fs, g)
	opts := cmd.flags(fs)
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprintf(stdout, "%s\n\nUsage:\n  kubectl %s [flags]\n\nFlags:\n%s", cmd.short, cmd.name, fs.FlagUsages())
			return nil
		}
		return fail(stderr, fmt.Errorf("%v\nSee 'kubectl %s --help' for usage.", err, cmd.name))
	}
	e := &env{ctx: ctx, in: stdin, out: stdout, errOut: stderr, g: g, fs: fs}
	if err := cmd.run(e, opts, fs.Args()); err != nil {
		return fail(stderr, err)
	}
	return nil
}

func hasHelp(args []string) bool {
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "help" {
			return true
		}
	}
	return false
}

// commandIndex returns the position of the subcommand name in args.
func commandIndex(args []string) int {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return -1
		}
		if strings.HasPrefix(a, "-") {
			if !strings.Contains(a, "=") && globalValueFlags[a] {
				i++
			}
			continue
		}
		return i
	}
	return -1
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "kubectl controls the Kubernetes cluster manager (skiff's embedded subset).")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Available Commands:")
	names := make([]string, 0, len(commands))
	for _, c := range commands {
		names = append(names, c.name)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-15s%s\n", n, findCommand(n).short)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage:\n  kubectl [flags] [options]")
}

// env is the per-invocation state: streams, flags and lazily built clients.
type env struct {
	ctx    context.Context
	in     io.Reader
	out    io.Writer
	errOut io.Writer
	g      *globalFlags
	fs     *pflag.FlagSet

	clientConfig clientcmd.ClientConfig
	restConfig   *rest.Config
	rc           *rest.RESTClient
	disc         discovery.CachedDiscoveryInterface
	mapper       meta.RESTMapper
	namespace    string
	nsExplicit   bool

	fieldValidation string // apply/create: Strict, Warn or Ignore
}

func (e *env) loadConfig() error {
	if e.clientConfig != nil {
		return nil
	}
	rules := &clientcmd.ClientConfigLoadingRules{}
	switch {
	case e.g.kubeconfig != "":
		rules.ExplicitPath = e.g.kubeconfig
	case os.Getenv("KUBECONFIG") != "":
		rules.Precedence = filepath.SplitList(os.Getenv("KUBECONFIG"))
	default:
		// With --server alone a missing default file is no error.
		if _, err := os.Stat(DefaultKubeconfig); err == nil || e.g.server == "" {
			rules.ExplicitPath = DefaultKubeconfig
		}
	}
	overrides := &clientcmd.ConfigOverrides{
		CurrentContext: e.g.context,
		Context: clientcmdapi.Context{
			Namespace: e.g.namespace,
			Cluster:   e.g.cluster,
			AuthInfo:  e.g.user,
		},
	}
	overrides.ClusterInfo.Server = e.g.server
	overrides.ClusterInfo.InsecureSkipTLSVerify = e.g.insecure
	overrides.AuthInfo.Token = e.g.token
	e.clientConfig = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)

	ns, explicit, err := e.clientConfig.Namespace()
	if err != nil {
		return err
	}
	e.namespace, e.nsExplicit = ns, explicit || e.g.namespace != ""
	cfg, err := e.clientConfig.ClientConfig()
	if err != nil {
		return err
	}
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "skiff-kubectl"
	cfg.WarningHandler = rest.NewWarningWriter(e.errOut, rest.WarningWriterOptions{Deduplicate: true})
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 50, 300
	}
	e.restConfig = cfg
	return nil
}

// client returns the REST client used for every API request.
func (e *env) client() (*rest.RESTClient, error) {
	if e.rc != nil {
		return e.rc, nil
	}
	if err := e.loadConfig(); err != nil {
		return nil, err
	}
	cfg := rest.CopyConfig(e.restConfig)
	cfg.APIPath = ""
	cfg.GroupVersion = nil
	cfg.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	rc, err := rest.UnversionedRESTClientFor(cfg)
	if err != nil {
		return nil, err
	}
	e.rc = rc
	return rc, nil
}

func (e *env) discovery() (discovery.CachedDiscoveryInterface, error) {
	if e.disc != nil {
		return e.disc, nil
	}
	if err := e.loadConfig(); err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(e.restConfig)
	if err != nil {
		return nil, err
	}
	e.disc = memory.NewMemCacheClient(dc)
	return e.disc, nil
}

func (e *env) restMapper() (meta.RESTMapper, error) {
	if e.mapper != nil {
		return e.mapper, nil
	}
	dc, err := e.discovery()
	if err != nil {
		return nil, err
	}
	groups, err := restmapper.GetAPIGroupResources(dc)
	if err != nil && len(groups) == 0 {
		return nil, err
	}
	e.mapper = restmapper.NewShortcutExpander(restmapper.NewDiscoveryRESTMapper(groups), dc, func(msg string) {
		fmt.Fprintf(e.errOut, "Warning: %s\n", msg)
	})
	return e.mapper, nil
}

// ns returns the namespace the command works in (flag, else kubeconfig
// context, else "default").
func (e *env) ns() (string, error) {
	if err := e.loadConfig(); err != nil {
		return "", err
	}
	return e.namespace, nil
}
