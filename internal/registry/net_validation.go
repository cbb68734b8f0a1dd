package registry

// Small validators shared by the Service, Endpoints, EndpointSlice and
// Ingress strategies, worded as pkg/apis/core/validation words them. Name
// and port validators (coreDNS1123Label, coreValidatePortNumOrName, …) are
// shared with the core strategies in validation_core.go.

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	netutils "k8s.io/utils/net"
)

// netValidateNonSpecialIP is ValidateNonSpecialIP: no unspecified, loopback
// or link-local addresses in endpoints and external IPs.
func netValidateNonSpecialIP(ipAddress string, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	ip := netutils.ParseIPSloppy(ipAddress)
	if ip == nil {
		return append(errs, field.Invalid(fldPath, ipAddress, "must be a valid IP address"))
	}
	if ip.IsUnspecified() {
		errs = append(errs, field.Invalid(fldPath, ipAddress, fmt.Sprintf("may not be unspecified (%v)", ipAddress)))
	}
	if ip.IsLoopback() {
		errs = append(errs, field.Invalid(fldPath, ipAddress, "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
	}
	if ip.IsLinkLocalUnicast() {
		errs = append(errs, field.Invalid(fldPath, ipAddress, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"))
	}
	if ip.IsLinkLocalMulticast() {
		errs = append(errs, field.Invalid(fldPath, ipAddress, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"))
	}
	return errs
}

// netValidateIP checks an IP as Kubernetes 1.32 checks its legacy IP fields
// (clusterIPs, externalIPs, endpoint addresses): parsed leniently, with
// StrictIPCIDRValidation off.
func netValidateIP(fldPath *field.Path, value string) field.ErrorList {
	return validation.IsValidIPForLegacyField(fldPath, value, false, nil)
}
