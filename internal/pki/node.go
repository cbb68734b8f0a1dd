package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Node credentials: how an agent joins (k3s style, on the API port).
//
//	GET  /cacerts                    unauthenticated; the cluster CA PEM, byte for byte
//	                                 the certificate whose sha256 a K10 token pins.
//	POST /v1-skiff/node-credentials  Authorization: Bearer <join token or secret>;
//	                                 body NodeCredentialsRequest (JSON), answer
//	                                 NodeCredentialsResponse (JSON), errors as a
//	                                 Kubernetes Status (401, 400, 405, 413).
//
// The agent makes its own keys: only CSRs travel. The client certificate is
// CN=system:node:<name>, O=system:nodes (what the API server's certificate
// authenticator maps to the node's identity, as the kubelet's client
// certificate in Kubernetes); the serving certificate is for the agent's
// kubelet port and carries the node name, node IPs and localhost.
const (
	CACertsPath         = "/cacerts"
	NodeCredentialsPath = "/v1-skiff/node-credentials"

	NodeUserPrefix = "system:node:"
	NodesGroup     = "system:nodes"

	// MaxNodeCredentialsRequest bounds the request body the server reads.
	MaxNodeCredentialsRequest = 64 << 10
	// maxServingSANs bounds the names a serving certificate may carry.
	maxServingSANs = 32
)

// NodeCredentialsRequest is the body of a join request.
type NodeCredentialsRequest struct {
	NodeName   string `json:"nodeName"`
	ClientCSR  string `json:"clientCSR"`  // PEM "CERTIFICATE REQUEST"
	ServingCSR string `json:"servingCSR"` // PEM "CERTIFICATE REQUEST"
}

// NodeCredentialsResponse is the answer to a join request (all PEM).
type NodeCredentialsResponse struct {
	ClientCertificate  string `json:"clientCertificate"`
	ServingCertificate string `json:"servingCertificate"`
	CA                 string `json:"ca"`
}

// ErrInvalidCSR wraps every reason a node CSR is refused.
var ErrInvalidCSR = errors.New("invalid certificate signing request")

// NodeUser is the user name of a node's client certificate.
func NodeUser(nodeName string) string { return NodeUserPrefix + nodeName }

// ValidateNodeName checks a node name as Kubernetes does (a DNS subdomain).
func ValidateNodeName(name string) error {
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return fmt.Errorf("node name %q: %s", name, strings.Join(msgs, "; "))
	}
	return nil
}

// NodeServingNames are the SANs of a node's serving certificate: its name,
// its IPs, localhost and 127.0.0.1.
func NodeServingNames(nodeName string, nodeIPs []net.IP) ServingNames {
	n := ServingNames{DNSNames: []string{nodeName}, IPs: []net.IP{net.IPv4(127, 0, 0, 1).To4()}}
	if nodeName != "localhost" {
		n.DNSNames = append(n.DNSNames, "localhost")
	}
	for _, ip := range nodeIPs {
		if ip == nil {
			continue
		}
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		if !containsIP(n.IPs, ip) {
			n.IPs = append(n.IPs, ip)
		}
	}
	return n
}

// NewNodeCSR makes an ECDSA P-256 key and a CSR for the node's identity
// (CN=system:node:<name>, O=system:nodes) with the given SANs (none for a
// client certificate). It returns both PEM encoded.
func NewNodeCSR(nodeName string, names ServingNames) (csrPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: NodeUser(nodeName), Organization: []string{NodesGroup}},
		DNSNames:    names.DNSNames,
		IPAddresses: names.IPs,
	}, key)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), keyPEM, nil
}

// SignNodeClient checks a node's client CSR (subject system:node:<name> /
// system:nodes, no SANs, a signature by its own key) and signs a client
// certificate for it.
func (ca *CA) SignNodeClient(nodeName string, csrPEM []byte) (KeyPair, error) {
	csr, err := parseNodeCSR(nodeName, csrPEM)
	if err != nil {
		return KeyPair{}, err
	}
	if len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.EmailAddresses)+len(csr.URIs) > 0 {
		return KeyPair{}, fmt.Errorf("%w: a client certificate request may not carry subject alternative names", ErrInvalidCSR)
	}
	return ca.signPublicKey(csr.PublicKey, leafTemplate(NodeUser(nodeName), []string{NodesGroup}, ServingNames{}, x509.ExtKeyUsageClientAuth))
}

// SignNodeServing checks a node's serving CSR and signs a serving
// certificate. Its DNS names may only be the node name and "localhost"; its
// IPs must be unicast addresses. Names in reserved (the API server's own
// names, say) other than localhost and loopback addresses are refused, so a
// node cannot obtain a certificate to impersonate the API server; pass an
// empty reserved for the server's own node.
func (ca *CA) SignNodeServing(nodeName string, csrPEM []byte, reserved ServingNames) (KeyPair, error) {
	csr, err := parseNodeCSR(nodeName, csrPEM)
	if err != nil {
		return KeyPair{}, err
	}
	if len(csr.EmailAddresses)+len(csr.URIs) > 0 {
		return KeyPair{}, fmt.Errorf("%w: only DNS and IP subject alternative names are allowed", ErrInvalidCSR)
	}
	if len(csr.DNSNames)+len(csr.IPAddresses) > maxServingSANs {
		return KeyPair{}, fmt.Errorf("%w: more than %d subject alternative names", ErrInvalidCSR, maxServingSANs)
	}
	if len(csr.DNSNames)+len(csr.IPAddresses) == 0 {
		return KeyPair{}, fmt.Errorf("%w: a serving certificate request needs at least one subject alternative name", ErrInvalidCSR)
	}
	for _, d := range csr.DNSNames {
		if d != nodeName && d != "localhost" {
			return KeyPair{}, fmt.Errorf("%w: DNS name %q is neither the node name %q nor localhost", ErrInvalidCSR, d, nodeName)
		}
		if d != "localhost" && slices.Contains(reserved.DNSNames, d) {
			return KeyPair{}, fmt.Errorf("%w: DNS name %q belongs to the API server", ErrInvalidCSR, d)
		}
	}
	for _, ip := range csr.IPAddresses {
		if ip.IsUnspecified() || ip.IsMulticast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() || ip.Equal(net.IPv4bcast) {
			return KeyPair{}, fmt.Errorf("%w: IP address %s is not a unicast address", ErrInvalidCSR, ip)
		}
		if !ip.IsLoopback() && containsIP(reserved.IPs, ip) {
			return KeyPair{}, fmt.Errorf("%w: IP address %s belongs to the API server", ErrInvalidCSR, ip)
		}
	}
	names := ServingNames{DNSNames: csr.DNSNames, IPs: csr.IPAddresses}
	return ca.signPublicKey(csr.PublicKey, leafTemplate(NodeUser(nodeName), []string{NodesGroup}, names, x509.ExtKeyUsageServerAuth))
}

// parseNodeCSR decodes one PEM CSR, checks its self-signature, key and
// subject.
func parseNodeCSR(nodeName string, csrPEM []byte) (*x509.CertificateRequest, error) {
	block, rest := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%w: not a PEM \"CERTIFICATE REQUEST\"", ErrInvalidCSR)
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, fmt.Errorf("%w: trailing data after the PEM block", ErrInvalidCSR)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrInvalidCSR, err)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, err
	}
	want := NodeUser(nodeName)
	if csr.Subject.CommonName != want {
		return nil, fmt.Errorf("%w: common name %q, want %q", ErrInvalidCSR, csr.Subject.CommonName, want)
	}
	if len(csr.Subject.Organization) != 1 || csr.Subject.Organization[0] != NodesGroup {
		return nil, fmt.Errorf("%w: organization %q, want [%s]", ErrInvalidCSR, csr.Subject.Organization, NodesGroup)
	}
	return csr, nil
}

func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("%w: ECDSA keys must use P-256 or P-384", ErrInvalidCSR)
		}
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 || n > 8192 {
			return fmt.Errorf("%w: RSA keys must have 2048 to 8192 bits, not %d", ErrInvalidCSR, n)
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("%w: unsupported public key type %T", ErrInvalidCSR, pub)
	}
	return nil
}

// signPublicKey signs tmpl for a public key the caller does not hold.
func (ca *CA) signPublicKey(pub crypto.PublicKey, tmpl *x509.Certificate) (KeyPair, error) {
	if _, ok := pub.(*rsa.PublicKey); !ok {
		// KeyEncipherment is meaningful for RSA key transport only.
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return KeyPair{}, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return KeyPair{}, err
	}
	return KeyPair{CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Cert: cert}, nil
}
