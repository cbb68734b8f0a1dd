package registry

// The Service allocation hooks: what allocateCreate, allocateUpdate and
// releaseAllocatedResources of Kubernetes' pkg/registry/core/service/storage
// do, on top of svcAllocator.

import (
	"context"
	"fmt"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func svcKey(svc *corev1.Service) string { return svc.Namespace + "/" + svc.Name }

func svcInvalid(svc *corev1.Service, errs field.ErrorList) error {
	return apierrors.NewInvalid(svcGroupKind, svc.Name, errs)
}

// BeforeCreate allocates the ClusterIP and NodePorts (allocateCreate of
// pkg/registry/core/service/storage/alloc.go).
func (s *serviceStrategy) BeforeCreate(_ context.Context, obj runtime.Object, dryRun bool) (func(), error) {
	svc := obj.(*corev1.Service)
	if err := s.initIPFamilies(svc, nil); err != nil {
		return nil, err
	}
	op := s.alloc.begin(svcKey(svc), dryRun)
	if err := s.allocClusterIPs(svc, op); err != nil {
		op.undo()
		return nil, err
	}
	if svcNeedsNodePort(svc) {
		if err := svcInitNodePorts(svc, op); err != nil {
			op.undo()
			return nil, err
		}
	}
	if svcNeedsHealthCheck(svc) {
		if err := svcAllocHealthCheckNodePort(svc, op); err != nil {
			op.undo()
			return nil, err
		}
	}
	return op.undo, nil
}

// BeforeUpdate allocates what a type change needs and releases, on commit,
// what the old object held and the new one does not (allocateUpdate).
func (s *serviceStrategy) BeforeUpdate(_ context.Context, obj, old runtime.Object, dryRun bool) (func(), func(), error) {
	svc, oldSvc := obj.(*corev1.Service), old.(*corev1.Service)
	if err := s.initIPFamilies(svc, oldSvc); err != nil {
		return nil, nil, err
	}
	op := s.alloc.begin(svcKey(svc), dryRun)
	fail := func(err error) (func(), func(), error) {
		op.undo()
		return nil, nil, err
	}

	switch {
	case oldSvc.Spec.Type == corev1.ServiceTypeExternalName && svc.Spec.Type != corev1.ServiceTypeExternalName:
		if err := s.allocClusterIPs(svc, op); err != nil {
			return fail(err)
		}
	case svcIsHeadless(oldSvc):
		// Headless services hold no IP.
	case oldSvc.Spec.Type != corev1.ServiceTypeExternalName && svc.Spec.Type == corev1.ServiceTypeExternalName:
		for _, ip := range oldSvc.Spec.ClusterIPs {
			op.releaseIPLater(ip)
		}
	}

	if svcNeedsNodePort(oldSvc) && !svcNeedsNodePort(svc) {
		for _, p := range svcNodePorts(oldSvc) {
			op.releasePortLater(p)
		}
	}
	if svcNeedsNodePort(svc) {
		if err := svcUpdateNodePorts(svc, oldSvc, op); err != nil {
			return fail(err)
		}
	}
	needed, needs := svcNeedsHealthCheck(oldSvc), svcNeedsHealthCheck(svc)
	switch {
	case !needed && needs:
		if err := svcAllocHealthCheckNodePort(svc, op); err != nil {
			return fail(err)
		}
	case needed && !needs:
		op.releasePortLater(int(oldSvc.Spec.HealthCheckNodePort))
	}
	return op.commit, op.undo, nil
}

// AfterDelete releases the ClusterIP and NodePorts of a removed Service.
func (s *serviceStrategy) AfterDelete(_ context.Context, obj runtime.Object) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return
	}
	ips, ports := svcHeld(svc)
	s.alloc.releaseNow(ips, ports)
}

// svcHeld lists the IPs and ports a stored Service holds.
func svcHeld(svc *corev1.Service) (ips []string, ports []int) {
	if svc.Spec.Type != corev1.ServiceTypeExternalName && !svcIsHeadless(svc) {
		ips = append(ips, svc.Spec.ClusterIPs...)
		if len(svc.Spec.ClusterIPs) == 0 && svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != corev1.ClusterIPNone {
			ips = append(ips, svc.Spec.ClusterIP)
		}
	}
	ports = svcNodePorts(svc)
	if svcNeedsHealthCheck(svc) && svc.Spec.HealthCheckNodePort > 0 {
		ports = append(ports, int(svc.Spec.HealthCheckNodePort))
	}
	return ips, ports
}

// Init rebuilds the bitmaps from the stored Services.
func (s *serviceStrategy) Init(ctx context.Context, existing []runtime.Object) error {
	log := slog.Default().With("component", "registry")
	s.alloc.reset()
	for _, obj := range existing {
		svc, ok := obj.(*corev1.Service)
		if !ok {
			continue
		}
		ips, ports := svcHeld(svc)
		for _, ip := range ips {
			if !s.alloc.markIP(ip) {
				log.WarnContext(ctx, "service cluster IP not in range or already in use", "service", svcKey(svc), "ip", ip)
			}
		}
		seen := map[int]bool{}
		for _, p := range ports {
			if seen[p] { // TCP and UDP ports of one service may share a NodePort
				continue
			}
			seen[p] = true
			if !s.alloc.markPort(p) {
				log.WarnContext(ctx, "service node port not in range or already in use", "service", svcKey(svc), "port", p)
			}
		}
	}
	return nil
}

func (s *serviceStrategy) allocClusterIPs(svc *corev1.Service, op *svcAllocOp) error {
	if svc.Spec.Type == corev1.ServiceTypeExternalName || svcIsHeadless(svc) {
		return nil
	}
	requested := ""
	if len(svc.Spec.ClusterIPs) > 0 {
		requested = svc.Spec.ClusterIPs[0]
	}
	ip, err := op.allocateIP(requested)
	if err != nil {
		if requested == "" {
			return apierrors.NewInternalError(fmt.Errorf("failed to allocate a serviceIP: %v", err))
		}
		return svcInvalid(svc, field.ErrorList{field.Invalid(field.NewPath("spec", "clusterIPs"), svc.Spec.ClusterIPs,
			fmt.Sprintf("failed to allocate IP %v: %v", requested, err))})
	}
	if len(svc.Spec.ClusterIPs) == 0 {
		svc.Spec.ClusterIPs = []string{ip}
	} else {
		svc.Spec.ClusterIPs[0] = ip
	}
	svc.Spec.ClusterIP = ip
	return nil
}

func svcShouldAllocateNodePorts(svc *corev1.Service) bool {
	switch svc.Spec.Type {
	case corev1.ServiceTypeNodePort:
		return true
	case corev1.ServiceTypeLoadBalancer:
		return svc.Spec.AllocateLoadBalancerNodePorts == nil || *svc.Spec.AllocateLoadBalancerNodePorts
	}
	return false
}

// svcInitNodePorts is initNodePorts: ports with the same number (e.g. 53/TCP
// and 53/UDP) share one NodePort.
func svcInitNodePorts(svc *corev1.Service, op *svcAllocOp) error {
	byPort := map[int32]int32{}
	for i := range svc.Spec.Ports {
		sp := &svc.Spec.Ports[i]
		if sp.NodePort == 0 && !svcShouldAllocateNodePorts(svc) {
			continue
		}
		path := field.NewPath("spec", "ports").Index(i).Child("nodePort")
		allocated := byPort[sp.Port]
		if allocated == 0 {
			if np := svcFindRequestedNodePort(sp.Port, svc.Spec.Ports); np != 0 {
				if _, err := op.allocatePort(int(np)); err != nil {
					return svcInvalid(svc, field.ErrorList{field.Invalid(path, np, err.Error())})
				}
				sp.NodePort = np
			} else {
				np, err := op.allocatePort(0)
				if err != nil {
					return apierrors.NewInternalError(fmt.Errorf("failed to allocate a nodePort: %v", err))
				}
				sp.NodePort = int32(np)
			}
			byPort[sp.Port] = sp.NodePort
		} else if sp.NodePort != allocated {
			if sp.NodePort == 0 {
				sp.NodePort = allocated
			} else if _, err := op.allocatePort(int(sp.NodePort)); err != nil {
				return svcInvalid(svc, field.ErrorList{field.Invalid(path, sp.NodePort, err.Error())})
			}
		}
	}
	return nil
}

func svcFindRequestedNodePort(port int32, ports []corev1.ServicePort) int32 {
	for _, sp := range ports {
		if sp.Port == port && sp.NodePort != 0 {
			return sp.NodePort
		}
	}
	return 0
}

// svcUpdateNodePorts is updateNodePorts of alloc.go.
func svcUpdateNodePorts(svc, old *corev1.Service, op *svcAllocOp) error {
	oldPorts := svcNodePorts(old)
	type protoPort struct {
		proto corev1.Protocol
		port  int32
	}
	var seen []protoPort
	taken := map[int32]bool{}
	for i := range svc.Spec.Ports {
		sp := &svc.Spec.Ports[i]
		if sp.NodePort == 0 && !svcShouldAllocateNodePorts(svc) {
			continue
		}
		if sp.NodePort != 0 {
			if !svcContains(oldPorts, int(sp.NodePort)) && !taken[sp.NodePort] {
				if _, err := op.allocatePort(int(sp.NodePort)); err != nil {
					return svcInvalid(svc, field.ErrorList{field.Invalid(field.NewPath("spec", "ports").Index(i).Child("nodePort"), sp.NodePort, err.Error())})
				}
				taken[sp.NodePort] = true
			}
		} else {
			np, err := op.allocatePort(0)
			if err != nil {
				return apierrors.NewInternalError(fmt.Errorf("failed to allocate a nodePort: %v", err))
			}
			sp.NodePort = int32(np)
		}
		pp := protoPort{sp.Protocol, sp.NodePort}
		for _, x := range seen {
			if x == pp {
				return apierrors.NewInternalError(fmt.Errorf("duplicate nodePort: %v", pp))
			}
		}
		seen = append(seen, pp)
	}
	newPorts := svcNodePorts(svc)
	for _, p := range oldPorts {
		if !svcContains(newPorts, p) {
			op.releasePortLater(p)
		}
	}
	return nil
}

// svcAllocHealthCheckNodePort reserves spec.healthCheckNodePort. A requested
// port that cannot be had is a 422 here (Kubernetes answers 500).
func svcAllocHealthCheckNodePort(svc *corev1.Service, op *svcAllocOp) error {
	if hc := svc.Spec.HealthCheckNodePort; hc != 0 {
		if _, err := op.allocatePort(int(hc)); err != nil {
			return svcInvalid(svc, field.ErrorList{field.Invalid(field.NewPath("spec", "healthCheckNodePort"), hc,
				fmt.Sprintf("failed to allocate requested HealthCheck NodePort %v: %v", hc, err))})
		}
		return nil
	}
	np, err := op.allocatePort(0)
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("failed to allocate a HealthCheck NodePort %v: %v", np, err))
	}
	svc.Spec.HealthCheckNodePort = int32(np)
	return nil
}

func svcNodePorts(svc *corev1.Service) []int {
	var out []int
	for _, p := range svc.Spec.Ports {
		if p.NodePort != 0 {
			out = append(out, int(p.NodePort))
		}
	}
	return out
}
