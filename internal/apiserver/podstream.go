package apiserver

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/proxy"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-dev/skiff/internal/registry"
)

// The pod subresources served through the node's kubelet endpoint
// (Config.KubeletTLS), as kube-apiserver's pkg/registry/core/pod/rest
// (log.go, subresources.go) and strategy.go's LogLocation, ExecLocation,
// AttachLocation and PortForwardLocation: the API server checks the pod and
// container and proxies to https://<node InternalIP>:<kubelet port>/….
// Upgrades (SPDY, WebSocket — v5.channel.k8s.io and SPDY tunneled through
// WebSocket included) pass through unchanged: the agent speaks every
// protocol kubectl does.
const (
	logSubresource         = "log"
	execSubresource        = "exec"
	attachSubresource      = "attach"
	portForwardSubresource = "portforward"

	defaultKubeletPort = 10250
)

var podStreamSubresources = []string{logSubresource, execSubresource, attachSubresource, portForwardSubresource}

// withPodStreamSubresources returns r with log, exec, attach and portforward
// served when it is the core pods resource (a copy: registry resources are
// shared).
func withPodStreamSubresources(r *registry.Resource) *registry.Resource {
	if r.Group != "" || r.Resource != "pods" || r.HasSubresource(logSubresource) {
		return r
	}
	cp := *r
	cp.Subresources = append(slices.Clone(r.Subresources), podStreamSubresources...)
	return &cp
}

func newKubeletTransport(cfg *tls.Config) *http.Transport {
	tc := cfg.Clone()
	// HTTP/1.1 only: the upgrades are proxied over a raw connection.
	tc.NextProtos = nil
	return &http.Transport{
		TLSClientConfig:       tc,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   16,
		ResponseHeaderTimeout: 0, // a follower's headers come at once, but the body streams
	}
}

// servePodStream serves pods/{log,exec,attach,portforward}.
func (s *Server) servePodStream(w http.ResponseWriter, r *http.Request, ri *reqInfo) {
	switch ri.sub {
	case logSubresource:
		if r.Method != http.MethodGet {
			s.writeError(w, r, errMethodNotAllowed(ri.gr(), verbOf(r.Method)))
			return
		}
	default:
		if r.Method != http.MethodGet && r.Method != http.MethodPost {
			s.writeError(w, r, errMethodNotAllowed(ri.gr(), verbOf(r.Method)))
			return
		}
	}
	obj, _, err := s.getObject(r.Context(), ri.res, ri.namespace, ri.name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		s.writeError(w, r, errNotFoundPath())
		return
	}
	q := r.URL.Query()
	if ri.sub == logSubresource {
		s.podLog(w, r, pod, q)
		return
	}
	params := url.Values{}
	var path string
	switch ri.sub {
	case execSubresource, attachSubresource:
		container, err := validateContainer(q.Get("container"), pod)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		for _, p := range []struct{ api, kubelet string }{{"stdin", "input"}, {"stdout", "output"}, {"stderr", "error"}, {"tty", "tty"}} {
			v, err := boolParam(q, p.api)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			if v {
				params.Add(p.kubelet, "1")
			}
		}
		if ri.sub == execSubresource {
			for _, c := range q["command"] {
				params.Add("command", c)
			}
		}
		path = fmt.Sprintf("/%s/%s/%s/%s", ri.sub, pod.Namespace, pod.Name, container)
	case portForwardSubresource:
		var ports []string
		for _, v := range q["ports"] {
			for _, p := range strings.Split(v, ",") {
				n, err := strconv.ParseUint(strings.TrimSpace(p), 10, 16)
				if err != nil || n == 0 {
					s.writeError(w, r, apierrors.NewBadRequest(fmt.Sprintf("invalid port %q", p)))
					return
				}
				ports = append(ports, strconv.FormatUint(n, 10))
			}
		}
		if len(ports) > 0 {
			params.Add("port", strings.Join(ports, ","))
		}
		path = fmt.Sprintf("/portForward/%s/%s", pod.Namespace, pod.Name)
	}
	if pod.Spec.NodeName == "" {
		s.writeError(w, r, apierrors.NewBadRequest(fmt.Sprintf("pod %s does not have a host assigned", pod.Name)))
		return
	}
	loc, err := s.kubeletLocation(r, pod.Spec.NodeName, path, params)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	h := proxy.NewUpgradeAwareHandler(loc, s.kubelet, false, true, proxyResponder{s})
	h.UseLocationHost = true
	h.RejectForwardingRedirects = true
	h.ServeHTTP(w, stripCredentials(r))
}

// stripCredentials drops the client's own credentials before the request
// goes to the node (kube-apiserver's authentication filter removes them).
func stripCredentials(r *http.Request) *http.Request {
	r2 := r.Clone(r.Context())
	r2.Header.Del("Authorization")
	for k := range r2.Header {
		if strings.HasPrefix(k, "Impersonate-") {
			r2.Header.Del(k)
		}
	}
	return r2
}

// proxyResponder answers proxy failures (the node cannot be dialed, its
// answer is not an upgrade) as kube-apiserver does: a 500 Status carrying
// the error's text, e.g. "error dialing backend: dial tcp …".
type proxyResponder struct{ s *Server }

func (p proxyResponder) Error(w http.ResponseWriter, r *http.Request, err error) {
	var se apierrors.APIStatus
	if e, ok := err.(apierrors.APIStatus); ok {
		se = e
	}
	if se != nil {
		st := se.Status()
		p.s.writeStatus(w, r, &st)
		return
	}
	p.s.log.Debug("proxy to node failed", "path", r.URL.Path, "err", err)
	p.s.writeStatus(w, r, &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusInternalServerError, Message: err.Error()})
}

// kubeletLocation is the node's kubelet URL for path: its InternalIP (else
// its Hostname) and status.daemonEndpoints.kubeletEndpoint.Port (default
// 10250).
func (s *Server) kubeletLocation(r *http.Request, nodeName, path string, params url.Values) (*url.URL, error) {
	nodes := s.byGR[schema.GroupResource{Resource: "nodes"}]
	if nodes == nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("nodes are not served"))
	}
	obj, _, err := s.getObject(r.Context(), nodes, "", nodeName)
	if err != nil {
		return nil, err
	}
	node, ok := obj.(*corev1.Node)
	if !ok {
		return nil, apierrors.NewInternalError(fmt.Errorf("unexpected node object %T", obj))
	}
	host := ""
	for _, t := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeHostName} {
		for _, a := range node.Status.Addresses {
			if a.Type == t && a.Address != "" {
				host = a.Address
				break
			}
		}
		if host != "" {
			break
		}
	}
	if host == "" {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("node %s has no valid hostname and/or IP address", nodeName))
	}
	port := int(node.Status.DaemonEndpoints.KubeletEndpoint.Port)
	if port <= 0 {
		port = defaultKubeletPort
	}
	return &url.URL{Scheme: "https", Host: net.JoinHostPort(host, strconv.Itoa(port)), Path: path, RawQuery: params.Encode()}, nil
}

// podLog serves pods/log: validation as kube-apiserver's LogREST, the
// container status check as the kubelet's validateContainerLogStatus, then
// the node's /containerLogs streamed back (flushed as it comes when
// following).
func (s *Server) podLog(w http.ResponseWriter, r *http.Request, pod *corev1.Pod, q url.Values) {
	opts, err := parsePodLogOptions(q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if errs := validatePodLogOptions(opts); len(errs) > 0 {
		s.writeError(w, r, apierrors.NewInvalid(schema.GroupKind{Kind: "PodLogOptions"}, pod.Name, errs))
		return
	}
	container, err := validateContainer(opts.Container, pod)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if pod.Spec.NodeName == "" {
		// kube-apiserver streams nothing for a pod that has no node yet.
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusOK)
		return
	}
	if err := validateContainerLogStatus(pod, container, opts.Previous); err != nil {
		s.writeError(w, r, err)
		return
	}
	params := url.Values{}
	if opts.Follow {
		params.Add("follow", "true")
	}
	if opts.Previous {
		params.Add("previous", "true")
	}
	if opts.Timestamps {
		params.Add("timestamps", "true")
	}
	if opts.SinceSeconds != nil {
		params.Add("sinceSeconds", strconv.FormatInt(*opts.SinceSeconds, 10))
	}
	if opts.SinceTime != nil {
		params.Add("sinceTime", opts.SinceTime.UTC().Format(time.RFC3339))
	}
	if opts.TailLines != nil {
		params.Add("tailLines", strconv.FormatInt(*opts.TailLines, 10))
	}
	if opts.LimitBytes != nil {
		params.Add("limitBytes", strconv.FormatInt(*opts.LimitBytes, 10))
	}
	loc, err := s.kubeletLocation(r, pod.Spec.NodeName, fmt.Sprintf("/containerLogs/%s/%s/%s", pod.Namespace, pod.Name, container), params)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, loc.String(), nil)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	resp, err := s.kubelet.RoundTrip(req)
	if err != nil {
		s.writeStatus(w, r, &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusInternalServerError, Message: err.Error()})
		return
	}
	defer resp.Body.Close()
	if err := checkKubeletResponse(resp, pod.Name); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if !opts.Follow || flusher == nil {
		_, _ = io.Copy(w, resp.Body)
		return
	}
	flusher.Flush()
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			flusher.Flush()
		}
		if err != nil {
			return
		}
	}
}

// checkKubeletResponse turns a node's error answer into an API error, as
// kube-apiserver's GenericHttpResponseChecker.
func checkKubeletResponse(resp *http.Response, name string) error {
	if resp.StatusCode >= http.StatusOK && resp.StatusCode <= http.StatusPartialContent {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 50000))
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	text := strings.TrimSpace(string(body))
	switch resp.StatusCode {
	case http.StatusInternalServerError:
		return apierrors.NewInternalError(fmt.Errorf("%s", text))
	case http.StatusBadRequest:
		return apierrors.NewBadRequest(text)
	}
	return apierrors.NewGenericServerResponse(resp.StatusCode, "", corev1.Resource("pods/log"), name, text, 0, false)
}

func boolParam(q url.Values, name string) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, apierrors.NewBadRequest(fmt.Sprintf("invalid value %q for %s: %v", v, name, err))
	}
	return b, nil
}

// parsePodLogOptions reads PodLogOptions from the query.
func parsePodLogOptions(q url.Values) (*corev1.PodLogOptions, error) {
	o := &corev1.PodLogOptions{Container: q.Get("container")}
	var err error
	for _, p := range []struct {
		name string
		dst  *bool
	}{{"follow", &o.Follow}, {"previous", &o.Previous}, {"timestamps", &o.Timestamps}, {"insecureSkipTLSVerifyBackend", &o.InsecureSkipTLSVerifyBackend}} {
		if *p.dst, err = boolParam(q, p.name); err != nil {
			return nil, err
		}
	}
	for _, p := range []struct {
		name string
		dst  **int64
	}{{"sinceSeconds", &o.SinceSeconds}, {"tailLines", &o.TailLines}, {"limitBytes", &o.LimitBytes}} {
		v := q.Get(p.name)
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid value %q for %s: %v", v, p.name, err))
		}
		*p.dst = &n
	}
	if v := q.Get("sinceTime"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid value %q for sinceTime: %v", v, err))
		}
		mt := metav1.NewTime(t)
		o.SinceTime = &mt
	}
	return o, nil
}

// validatePodLogOptions is kube-apiserver's ValidatePodLogOptions.
func validatePodLogOptions(o *corev1.PodLogOptions) field.ErrorList {
	var errs field.ErrorList
	if o.TailLines != nil && *o.TailLines < 0 {
		errs = append(errs, field.Invalid(field.NewPath("tailLines"), *o.TailLines, "must be greater than or equal to 0"))
	}
	if o.LimitBytes != nil && *o.LimitBytes < 1 {
		errs = append(errs, field.Invalid(field.NewPath("limitBytes"), *o.LimitBytes, "must be greater than 0"))
	}
	switch {
	case o.SinceSeconds != nil && o.SinceTime != nil:
		errs = append(errs, field.Forbidden(field.NewPath(""), "at most one of `sinceTime` or `sinceSeconds` may be specified"))
	case o.SinceSeconds != nil && *o.SinceSeconds < 1:
		errs = append(errs, field.Invalid(field.NewPath("sinceSeconds"), *o.SinceSeconds, "must be greater than 0"))
	}
	return errs
}

// validateContainer is kube-apiserver's: the container named, or the only
// one of the pod.
func validateContainer(container string, pod *corev1.Pod) (string, error) {
	if container == "" {
		switch len(pod.Spec.Containers) {
		case 1:
			return pod.Spec.Containers[0].Name, nil
		case 0:
			return "", apierrors.NewBadRequest(fmt.Sprintf("a container name must be specified for pod %s", pod.Name))
		default:
			var names []string
			for _, c := range pod.Spec.InitContainers {
				names = append(names, c.Name)
			}
			for _, c := range pod.Spec.Containers {
				names = append(names, c.Name)
			}
			for _, c := range pod.Spec.EphemeralContainers {
				names = append(names, c.Name)
			}
			return "", apierrors.NewBadRequest(fmt.Sprintf("a container name must be specified for pod %s, choose one of: %s", pod.Name, names))
		}
	}
	for _, c := range pod.Spec.InitContainers {
		if c.Name == container {
			return container, nil
		}
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == container {
			return container, nil
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		if c.Name == container {
			return container, nil
		}
	}
	return "", apierrors.NewBadRequest(fmt.Sprintf("container %s is not valid for pod %s", container, pod.Name))
}

// validateContainerLogStatus is the kubelet's check that a container has
// logs to show, on the pod's reported status.
func validateContainerLogStatus(pod *corev1.Pod, container string, previous bool) error {
	var cs *corev1.ContainerStatus
	for _, list := range [][]corev1.ContainerStatus{pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for i := range list {
			if list[i].Name == container {
				cs = &list[i]
			}
		}
	}
	bad := func(format string, args ...any) error {
		return apierrors.NewBadRequest(fmt.Sprintf(format, args...))
	}
	if cs == nil {
		return bad("container %q in pod %q is not available", container, pod.Name)
	}
	last := cs.LastTerminationState.Terminated
	st := cs.State
	switch {
	case previous:
		if last == nil || last.ContainerID == "" {
			return bad("previous terminated container %q in pod %q not found", container, pod.Name)
		}
	case st.Running != nil:
	case st.Terminated != nil:
		if st.Terminated.ContainerID == "" && (last == nil || last.ContainerID == "") {
			return bad("container %q in pod %q is terminated", container, pod.Name)
		}
	case last != nil:
		if last.ContainerID == "" {
			return bad("container %q in pod %q is terminated", container, pod.Name)
		}
	case st.Waiting != nil:
		switch st.Waiting.Reason {
		case "ErrImagePull":
			return bad("container %q in pod %q is waiting to start: image can't be pulled", container, pod.Name)
		case "ImagePullBackOff":
			return bad("container %q in pod %q is waiting to start: trying and failing to pull image", container, pod.Name)
		default:
			return bad("container %q in pod %q is waiting to start: %v", container, pod.Name, st.Waiting.Reason)
		}
	default:
		return bad("container %q in pod %q is waiting to start - no logs yet", container, pod.Name)
	}
	return nil
}
