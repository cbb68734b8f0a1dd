package kubectl

import (
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/streaming/pkg/httpstream"
)

type portForwardOptions struct {
	addresses  []string
	podTimeout time.Duration
}

func init() {
	register(command{
		name:  "port-forward",
		short: "Forward one or more local ports to a pod",
		flags: func(fs *pflag.FlagSet) any {
			o := &portForwardOptions{}
			fs.DurationVar(&o.podTimeout, "pod-running-timeout", time.Minute, "The length of time (like 5s, 2m, or 3h, higher than zero) to wait until at least one pod is running")
			fs.StringSliceVar(&o.addresses, "address", []string{"localhost"}, "Addresses to listen on (comma separated). Only accepts IP addresses or localhost as a value. When localhost is supplied, kubectl will try to bind on both 127.0.0.1 and ::1 and will fail if neither of these addresses are available to bind.")
			return o
		},
		run: func(e *env, opts any, args []string) error {
			return runPortForward(e, opts.(*portForwardOptions), args)
		},
	})
}

func runPortForward(e *env, o *portForwardOptions, args []string) error {
	if len(args) < 2 {
		return usageError("port-forward", "TYPE/NAME and list of ports are required for port-forward")
	}
	if o.podTimeout <= 0 {
		return usageError("port-forward", "--pod-running-timeout must be higher than zero")
	}
	a, err := e.resolvePodArg("", args[0])
	if err != nil {
		return err
	}
	pod, err := e.attachablePod(a, o.podTimeout)
	if err != nil {
		return err
	}
	obj, err := a.typed()
	if err != nil {
		return err
	}
	var ports []string
	if svc, ok := obj.(*corev1.Service); ok {
		if err := checkUDPPorts(svcUDPOnly(svc), args[1:], func(name string) (int32, error) { return servicePortByName(svc, name) }); err != nil {
			return err
		}
		if ports, err = translateServicePorts(args[1:], svc, pod); err != nil {
			return err
		}
	} else {
		if err := checkUDPPorts(podUDPOnly(pod), args[1:], func(name string) (int32, error) { return containerPortByName(pod, name) }); err != nil {
			return err
		}
		if ports, err = convertNamedPorts(args[1:], pod); err != nil {
			return err
		}
	}

	cs, err := e.clientset()
	if err != nil {
		return err
	}
	pod, err = cs.CoreV1().Pods(pod.Namespace).Get(e.ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if pod.Status.Phase != corev1.PodRunning {
		return fmt.Errorf("unable to forward port because pod is not running. Current status=%v", pod.Status.Phase)
	}

	ctx, stop := signal.NotifyContext(e.ctx, os.Interrupt)
	defer stop()
	u := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("portforward").URL()
	transport, upgrader, err := spdy.RoundTripperFor(e.restConfig)
	if err != nil {
		return err
	}
	dialer := spdy.NewDialerForStreaming(statusUpgrader{upgrader}, &http.Client{Transport: transport}, "POST", u)
	if !websocketsDisabled("KUBECTL_PORT_FORWARD_WEBSOCKETS") {
		tunnel, err := portforward.NewSPDYOverWebsocketDialerForStreaming(u, e.restConfig)
		if err != nil {
			return err
		}
		dialer = portforward.NewFallbackDialerForStreaming(tunnel, dialer, func(err error) bool {
			return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
		})
	}
	fw, err := portforward.NewOnAddressesForStreamingWithContext(ctx, dialer, o.addresses, ports, make(chan struct{}), e.out, e.errOut)
	if err != nil {
		return err
	}
	if err := fw.ForwardPorts(); err != nil && ctx.Err() == nil {
		return err
	}
	return nil // stopped by an interrupt or the caller
}

// splitPort splits [LOCAL:]REMOTE.
func splitPort(port string) (local, remote string) {
	parts := strings.Split(port, ":")
	if len(parts) == 2 {
		return parts[0], parts[1]
	}
	return parts[0], parts[0]
}

func containerPortByName(pod *corev1.Pod, name string) (int32, error) {
	for _, cs := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for _, c := range cs {
			for _, p := range c.Ports {
				if p.Name == name {
					return p.ContainerPort, nil
				}
			}
		}
	}
	return -1, fmt.Errorf("Pod '%s' does not have a named port '%s'", pod.Name, name)
}

func servicePortByName(svc *corev1.Service, name string) (int32, error) {
	for _, p := range svc.Spec.Ports {
		if p.Name == name {
			return p.Port, nil
		}
	}
	return -1, fmt.Errorf("Service '%s' does not have a named port '%s'", svc.Name, name)
}

// containerPortForServicePort resolves a service port to the pod's port:
// its targetPort, by number or by the pod's port name.
func containerPortForServicePort(svc *corev1.Service, pod *corev1.Pod, port int32) (int32, error) {
	if svc.Spec.ClusterIP == corev1.ClusterIPNone {
		return port, nil
	}
	for _, p := range svc.Spec.Ports {
		if p.Port != port {
			continue
		}
		if p.TargetPort.Type == intstr.Int {
			if p.TargetPort.IntValue() == 0 {
				return p.Port, nil
			}
			return int32(p.TargetPort.IntValue()), nil
		}
		return containerPortByName(pod, p.TargetPort.String())
	}
	return port, fmt.Errorf("Service %s does not have a service port %d", svc.Name, port)
}

func translateServicePorts(ports []string, svc *corev1.Service, pod *corev1.Pod) ([]string, error) {
	var out []string
	for _, port := range ports {
		local, remote := splitPort(port)
		num, err := strconv.Atoi(remote)
		if err != nil {
			p, err := servicePortByName(svc, remote)
			if err != nil {
				return nil, err
			}
			num = int(p)
			if local == remote {
				local = strconv.Itoa(num)
			}
		}
		cp, err := containerPortForServicePort(svc, pod, int32(num))
		if err != nil {
			return nil, err
		}
		remote = strconv.Itoa(int(cp))
		if local != remote {
			out = append(out, local+":"+remote)
		} else {
			out = append(out, remote)
		}
	}
	return out, nil
}

func convertNamedPorts(ports []string, pod *corev1.Pod) ([]string, error) {
	var out []string
	for _, port := range ports {
		local, remote := splitPort(port)
		if remote == "" {
			return nil, fmt.Errorf("remote port cannot be empty")
		}
		num := remote
		if _, err := strconv.Atoi(remote); err != nil {
			p, err := containerPortByName(pod, remote)
			if err != nil {
				return nil, err
			}
			num = strconv.Itoa(int(p))
		}
		if local != remote {
			out = append(out, local+":"+num)
		} else {
			out = append(out, num)
		}
	}
	return out, nil
}

// udpOnly returns the ports declared with UDP and never with TCP:
// port-forward only carries TCP.
func udpOnly(specs map[int32][]corev1.Protocol) map[int]bool {
	out := map[int]bool{}
	for port, protos := range specs {
		udp, tcp := false, false
		for _, p := range protos {
			switch p {
			case corev1.ProtocolUDP:
				udp = true
			case corev1.ProtocolTCP:
				tcp = true
			}
		}
		if udp && !tcp {
			out[int(port)] = true
		}
	}
	return out
}

func svcUDPOnly(svc *corev1.Service) map[int]bool {
	m := map[int32][]corev1.Protocol{}
	for _, p := range svc.Spec.Ports {
		m[p.Port] = append(m[p.Port], p.Protocol)
	}
	return udpOnly(m)
}

func podUDPOnly(pod *corev1.Pod) map[int]bool {
	m := map[int32][]corev1.Protocol{}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			m[p.ContainerPort] = append(m[p.ContainerPort], p.Protocol)
		}
	}
	return udpOnly(m)
}

func checkUDPPorts(udp map[int]bool, ports []string, byName func(string) (int32, error)) error {
	for _, port := range ports {
		_, remote := splitPort(port)
		num, err := strconv.Atoi(remote)
		if err != nil {
			p, err := byName(remote)
			if err != nil {
				return err
			}
			num = int(p)
		}
		if udp[num] {
			return fmt.Errorf("UDP protocol is not supported for %s", remote)
		}
	}
	return nil
}
