package server

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/internal/clusterinfo"
)

// SystemNamespaces exist from the first start, as in Kubernetes.
var SystemNamespaces = []string{metav1.NamespaceDefault, metav1.NamespaceSystem, metav1.NamespacePublic, "kube-node-lease"}

// bootstrap creates, through the API like any other client, the objects a
// cluster has from the start: the system namespaces and the
// default/kubernetes Service with Endpoints and an EndpointSlice pointing
// at this API server, and the cluster information agents read
// (clusterinfo). It is idempotent and corrects drift (a new node IP).
func (s *Server) bootstrap(ctx context.Context, c kubernetes.Interface) error {
	// The listener is up before bootstrap starts, but retry briefly in case
	// the first connection races the TLS server's start.
	var last error
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if last = s.bootstrapOnce(ctx, c); last != nil {
			s.log.Debug("bootstrap not done yet", "err", last)
			return false, nil
		}
		return true, nil
	})
	if err != nil && last != nil {
		return fmt.Errorf("%w (last error: %v)", err, last)
	}
	return err
}

func (s *Server) bootstrapOnce(ctx context.Context, c kubernetes.Interface) error {
	for _, ns := range SystemNamespaces {
		_, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("namespace %s: %w", ns, err)
		}
	}
	// What agents need to know about the cluster (pod network, CIDRs, DNS).
	if err := clusterinfo.Publish(ctx, c, s.clusterInfo()); err != nil {
		return err
	}
	port := int32(s.cfg.HTTPSPort)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: metav1.NamespaceDefault,
			Labels: map[string]string{"component": "apiserver", "provider": "kubernetes"}},
		Spec: corev1.ServiceSpec{
			Type:            corev1.ServiceTypeClusterIP,
			ClusterIP:       s.res.apiServiceIP.String(),
			SessionAffinity: corev1.ServiceAffinityNone,
			Ports: []corev1.ServicePort{{Name: "https", Protocol: corev1.ProtocolTCP, Port: 443,
				TargetPort: intstr.FromInt32(port)}},
		},
	}
	if err := upsertService(ctx, c, svc); err != nil {
		return fmt.Errorf("service default/kubernetes: %w", err)
	}

	if s.res.advertiseIP == nil || s.res.advertiseIP.IsLoopback() {
		// Kubernetes refuses loopback endpoints (pods could not reach them);
		// a host with no other address has a kubernetes Service without
		// endpoints until it gets one.
		s.log.Warn("no non-loopback node IP; default/kubernetes gets no endpoints (set --node-ip)")
		return nil
	}
	ip := s.res.advertiseIP.String()
	ep := &corev1.Endpoints{
		ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: metav1.NamespaceDefault,
			Labels: map[string]string{"endpointslice.kubernetes.io/skip-mirror": "true"}},
		Subsets: []corev1.EndpointSubset{{
			Addresses: []corev1.EndpointAddress{{IP: ip}},
			Ports:     []corev1.EndpointPort{{Name: "https", Port: port, Protocol: corev1.ProtocolTCP}},
		}},
	}
	if err := upsertEndpoints(ctx, c, ep); err != nil {
		return err
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: metav1.NamespaceDefault,
			Labels: map[string]string{discoveryv1.LabelServiceName: "kubernetes"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	return upsertEndpointSlice(ctx, c, slice)
}

// clusterInfo is what the server publishes for agents.
func (s *Server) clusterInfo() clusterinfo.Info {
	return clusterinfo.Info{
		ClusterCIDR:   s.res.clusterCIDR,
		ServiceCIDR:   s.res.serviceCIDR,
		PodNetwork:    s.cfg.PodNetwork,
		ClusterDNS:    s.res.clusterDNS,
		ClusterDomain: s.cfg.ClusterDomain,
	}
}

// typedClient is the part of a client-go typed client that ensure needs.
type typedClient[T any] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

// ensure creates want when it is missing; otherwise, when upToDate(cur) is
// false, it copies the wanted fields into cur (adopt) and updates it. It
// gets before it creates: creating the kubernetes Service that exists fails
// on its requested ClusterIP (422 "provided IP is already allocated", as in
// Kubernetes), never with AlreadyExists.
func ensure[T any](ctx context.Context, api typedClient[T], name string, want T, upToDate func(cur T) bool, adopt func(cur T)) error {
	cur, err := api.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = api.Create(ctx, want, metav1.CreateOptions{})
		return err
	}
	if err != nil || upToDate(cur) {
		return err
	}
	adopt(cur)
	_, err = api.Update(ctx, cur, metav1.UpdateOptions{})
	return err
}

// upsertService keeps the API port right (a restart with another
// --https-listen-port changes the target port).
func upsertService(ctx context.Context, c kubernetes.Interface, want *corev1.Service) error {
	return ensure(ctx, c.CoreV1().Services(want.Namespace), want.Name, want,
		func(cur *corev1.Service) bool {
			return len(cur.Spec.Ports) == 1 && cur.Spec.Ports[0].Port == want.Spec.Ports[0].Port &&
				cur.Spec.Ports[0].TargetPort == want.Spec.Ports[0].TargetPort
		},
		func(cur *corev1.Service) { cur.Spec.Ports = want.Spec.Ports })
}

func upsertEndpoints(ctx context.Context, c kubernetes.Interface, want *corev1.Endpoints) error {
	return ensure(ctx, c.CoreV1().Endpoints(want.Namespace), want.Name, want,
		func(cur *corev1.Endpoints) bool { return apiequality.Semantic.DeepEqual(cur.Subsets, want.Subsets) },
		func(cur *corev1.Endpoints) { cur.Subsets = want.Subsets })
}

func upsertEndpointSlice(ctx context.Context, c kubernetes.Interface, want *discoveryv1.EndpointSlice) error {
	return ensure(ctx, c.DiscoveryV1().EndpointSlices(want.Namespace), want.Name, want,
		func(cur *discoveryv1.EndpointSlice) bool {
			return apiequality.Semantic.DeepEqual(cur.Endpoints, want.Endpoints) &&
				apiequality.Semantic.DeepEqual(cur.Ports, want.Ports)
		},
		func(cur *discoveryv1.EndpointSlice) { cur.Endpoints, cur.Ports = want.Endpoints, want.Ports })
}
