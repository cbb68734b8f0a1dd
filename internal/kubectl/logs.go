package kubectl

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

type logsOptions struct {
	allContainers  bool
	allPods        bool
	follow         bool
	timestamps     bool
	limitBytes     int64
	previous       bool
	tail           int64
	ignoreErrors   bool
	sinceTime      string
	since          time.Duration
	container      string
	insecureBacked bool
	podTimeout     time.Duration
	selector       string
	maxFollow      int
	prefix         bool
}

const logsUsage = "logs [-f] [-p] (POD | TYPE/NAME) [-c CONTAINER]"

func init() {
	register(command{
		name:  "logs",
		short: "Print the logs for a container in a pod",
		flags: func(fs *pflag.FlagSet) any {
			o := &logsOptions{}
			fs.BoolVar(&o.allContainers, "all-containers", false, "Get all containers' logs in the pod(s).")
			fs.BoolVar(&o.allPods, "all-pods", false, "Get logs from all pod(s). Sets prefix to true.")
			fs.BoolVarP(&o.follow, "follow", "f", false, "Specify if the logs should be streamed.")
			fs.BoolVar(&o.timestamps, "timestamps", false, "Include timestamps on each line in the log output")
			fs.Int64Var(&o.limitBytes, "limit-bytes", 0, "Maximum bytes of logs to return. Defaults to no limit.")
			fs.BoolVarP(&o.previous, "previous", "p", false, "If true, print the logs for the previous instance of the container in a pod if it exists.")
			fs.Int64Var(&o.tail, "tail", -1, "Lines of recent log file to display. Defaults to -1 with no selector, showing all log lines otherwise 10, if a selector is provided.")
			fs.BoolVar(&o.ignoreErrors, "ignore-errors", false, "If watching / following pod logs, allow for any errors that occur to be non-fatal")
			fs.StringVar(&o.sinceTime, "since-time", "", "Only return logs after a specific date (RFC3339). Defaults to all logs. Only one of since-time / since may be used.")
			fs.DurationVar(&o.since, "since", 0, "Only return logs newer than a relative duration like 5s, 2m, or 3h. Defaults to all logs. Only one of since-time / since may be used.")
			fs.StringVarP(&o.container, "container", "c", "", "Print the logs of this container")
			fs.BoolVar(&o.insecureBacked, "insecure-skip-tls-verify-backend", false, "Skip verifying the identity of the kubelet that logs are requested from.")
			fs.DurationVar(&o.podTimeout, "pod-running-timeout", 20*time.Second, "The length of time (like 5s, 2m, or 3h, higher than zero) to wait until at least one pod is running")
			fs.StringVarP(&o.selector, "selector", "l", "", "Selector (label query) to filter on.")
			fs.IntVar(&o.maxFollow, "max-log-requests", 5, "Specify maximum number of concurrent logs to follow when using by a selector. Defaults to 5.")
			fs.BoolVar(&o.prefix, "prefix", false, "Prefix each log line with the log source (pod name and container name)")
			return o
		},
		run: func(e *env, opts any, args []string) error { return runLogs(e, opts.(*logsOptions), args) },
	})
}

// usageError is kubectl's cmdutil.UsageErrorf.
func usageError(cmd, msg string) error {
	return fmt.Errorf("%s\nSee 'kubectl %s -h' for help and examples", msg, cmd)
}

// logRequest is one container's log stream to read.
type logRequest struct {
	pod, container string
	opts           *corev1.PodLogOptions
}

func runLogs(e *env, o *logsOptions, args []string) error {
	logsUsageErr := fmt.Sprintf("expected '%s'.\nPOD or TYPE/NAME is a required argument for the logs command", logsUsage)
	var resourceArg string
	switch len(args) {
	case 0:
		if o.selector == "" {
			return usageError("logs", logsUsageErr)
		}
	case 1:
		resourceArg = args[0]
		if o.selector != "" {
			return usageError("logs", "only a selector (-l) or a POD name is allowed")
		}
	case 2:
		resourceArg = args[0]
		o.container = args[1]
	default:
		return usageError("logs", logsUsageErr)
	}
	if o.allPods {
		o.prefix = true
	}
	if o.podTimeout <= 0 {
		return errors.New("--pod-running-timeout must be higher than zero")
	}
	ns, err := e.ns()
	if err != nil {
		return err
	}

	// Complete: the log options, then the object.
	opts := &corev1.PodLogOptions{Container: o.container, Follow: o.follow, Previous: o.previous,
		Timestamps: o.timestamps, InsecureSkipTLSVerifyBackend: o.insecureBacked}
	if o.sinceTime != "" {
		t, err := time.Parse(time.RFC3339Nano, o.sinceTime)
		if err != nil {
			if t, err = time.Parse(time.RFC3339, o.sinceTime); err != nil {
				return err
			}
		}
		mt := metav1.NewTime(t)
		opts.SinceTime = &mt
	}
	if o.limitBytes != 0 {
		opts.LimitBytes = &o.limitBytes
	}
	if o.since != 0 {
		sec := int64(o.since.Round(time.Second).Seconds())
		opts.SinceSeconds = &sec
	}
	if o.selector != "" && o.tail == -1 && !e.fs.Changed("tail") {
		ten := int64(10)
		opts.TailLines = &ten
	} else if o.tail != -1 {
		opts.TailLines = &o.tail
	}

	var obj runtime.Object
	if resourceArg != "" {
		a, err := e.resolvePodArg("", resourceArg)
		if err != nil {
			var st apierrors.APIStatus
			if errors.As(err, &st) && apierrors.IsNotFound(err) {
				return fmt.Errorf("error from server (NotFound): %s in namespace %q", st.Status().Message, ns)
			}
			return err
		}
		if obj, err = a.typed(); err != nil {
			return err
		}
	} else {
		sel, err := labels.Parse(o.selector)
		if err != nil {
			return err
		}
		cs, err := e.clientset()
		if err != nil {
			return err
		}
		list, err := cs.CoreV1().Pods(ns).List(e.ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return err
		}
		if len(list.Items) == 0 {
			fmt.Fprintf(e.errOut, "No resources found in %s namespace.\n", ns)
		}
		obj = list
	}

	// Validate.
	if o.sinceTime != "" && o.since != 0 {
		return errors.New("at most one of `sinceTime` or `sinceSeconds` may be specified")
	}
	if o.allContainers && opts.Container != "" {
		return fmt.Errorf("--all-containers=true should not be specified with container name %s", opts.Container)
	}
	if e.fs.Changed("container") && len(args) == 2 {
		return errors.New("only one of -c or an inline [CONTAINER] arg is allowed")
	}
	if o.limitBytes < 0 {
		return errors.New("--limit-bytes must be greater than 0")
	}
	if opts.SinceSeconds != nil && *opts.SinceSeconds < 0 {
		return errors.New("--since must be greater than 0")
	}
	if opts.TailLines != nil && *opts.TailLines < -1 {
		return errors.New("--tail must be greater than or equal to -1")
	}

	reqs, err := e.logRequests(obj, opts, o.podTimeout, o.allContainers, o.allPods)
	if err != nil {
		return err
	}
	if o.follow && len(reqs) > 1 {
		if len(reqs) > o.maxFollow {
			return fmt.Errorf("you are attempting to follow %d log streams, but maximum allowed concurrency is %d, use --max-log-requests to increase the limit", len(reqs), o.maxFollow)
		}
		return e.consumeParallel(reqs, o)
	}
	for _, r := range reqs {
		if err := e.consumeLog(r, e.prefixed(r, o, e.out)); err != nil {
			return err
		}
	}
	return nil
}

// logRequests is kubectl's LogsForObject: the containers whose logs to
// read, in init, regular, ephemeral order.
func (e *env) logRequests(obj runtime.Object, opts *corev1.PodLogOptions, timeout time.Duration, allContainers, allPods bool) ([]logRequest, error) {
	switch t := obj.(type) {
	case *corev1.PodList:
		var out []logRequest
		for i := range t.Items {
			r, err := e.logRequests(&t.Items[i], opts, timeout, allContainers, allPods)
			if err != nil {
				return nil, err
			}
			out = append(out, r...)
		}
		return out, nil
	case *corev1.Pod:
		if !allContainers {
			cur := opts.DeepCopy()
			if def := t.Annotations[defaultContainerAnnotation]; def != "" && cur.Container == "" {
				if c, _ := findContainer(t, def); c == nil {
					fmt.Fprintf(e.errOut, "Default container name %q not found in pod %s\n", def, t.Name)
				} else {
					cur.Container = def
				}
			}
			if cur.Container == "" {
				if len(t.Spec.Containers) == 0 {
					return nil, fmt.Errorf("pod %s/%s does not have any containers", t.Namespace, t.Name)
				}
				cur.Container = t.Spec.Containers[0].Name
				if hasManyContainers(t) && !allPods {
					fmt.Fprintf(e.errOut, "Defaulted container %q out of: %s\n", cur.Container, allContainerNames(t))
				}
			}
			if c, _ := findContainer(t, cur.Container); c == nil {
				return nil, fmt.Errorf("container %s is not valid for pod %s", cur.Container, t.Name)
			}
			return []logRequest{{pod: t.Name, container: cur.Container, opts: cur}}, nil
		}
		var out []logRequest
		var names []string
		for _, c := range t.Spec.InitContainers {
			names = append(names, c.Name)
		}
		for _, c := range t.Spec.Containers {
			names = append(names, c.Name)
		}
		for _, c := range t.Spec.EphemeralContainers {
			names = append(names, c.Name)
		}
		for _, n := range names {
			cur := opts.DeepCopy()
			cur.Container = n
			out = append(out, logRequest{pod: t.Name, container: n, opts: cur})
		}
		return out, nil
	}
	ns, sel, err := selectorFor(obj)
	if err != nil {
		return nil, fmt.Errorf("cannot get the logs from %T: %v", obj, err)
	}
	pods, err := e.podList(ns, sel, timeout, loggingPodLess)
	if err != nil {
		return nil, err
	}
	var target runtime.Object = &pods[0]
	if len(pods) > 1 {
		if allPods {
			target = &corev1.PodList{Items: pods}
		} else {
			fmt.Fprintf(e.errOut, "Found %v pods, using pod/%v\n", len(pods), pods[0].Name)
		}
	}
	return e.logRequests(target, opts, timeout, allContainers, allPods)
}

// prefixed wraps w to start every line with "[pod/NAME/CONTAINER] ".
func (e *env) prefixed(r logRequest, o *logsOptions, w io.Writer) io.Writer {
	if !o.prefix {
		return w
	}
	return &prefixWriterTo{prefix: []byte(fmt.Sprintf("[pod/%s/%s] ", r.pod, r.container)), w: w}
}

// prefixWriterTo prepends its prefix to every write, which consumeLog
// makes one line at a time.
type prefixWriterTo struct {
	prefix []byte
	w      io.Writer
}

func (p *prefixWriterTo) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, err := p.w.Write(append(append([]byte{}, p.prefix...), b...))
	return max(0, min(len(b), n-len(p.prefix))), err
}

// consumeLog copies one log stream to out a line per write, so that
// parallel streams interleave only between lines.
func (e *env) consumeLog(r logRequest, out io.Writer) error {
	cs, err := e.clientset()
	if err != nil {
		return err
	}
	ns, err := e.ns()
	if err != nil {
		return err
	}
	rc, err := cs.CoreV1().Pods(ns).GetLogs(r.pod, r.opts).Stream(e.ctx)
	if err != nil {
		return err
	}
	defer rc.Close()
	br := bufio.NewReader(rc)
	for {
		line, err := br.ReadBytes('\n')
		if _, werr := out.Write(line); werr != nil {
			return werr
		}
		if err != nil {
			if err == io.EOF || e.ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

func (e *env) consumeParallel(reqs []logRequest, o *logsOptions) error {
	pr, pw := io.Pipe()
	var wg sync.WaitGroup
	for _, r := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.consumeLog(r, e.prefixed(r, o, pw)); err != nil {
				if !o.ignoreErrors {
					pw.CloseWithError(err)
					return
				}
				fmt.Fprintf(pw, "error: %v\n", err)
			}
		}()
	}
	go func() {
		wg.Wait()
		pw.Close()
	}()
	_, err := io.Copy(e.out, pr)
	if err != nil && strings.Contains(err.Error(), "context canceled") {
		return nil
	}
	return err
}
