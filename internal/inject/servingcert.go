package inject

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"time"
)

// IssueServingCert signs a TLS server certificate for the webhook with a CA
// key (for the built-in CA: trust.CA.WriteFiles then trust.LoadCAFiles).
// The kube-apiserver checks it against the caBundle of the webhook
// configuration: put the CA certificate there. dnsNames and ips are the
// names the apiserver dials (the Service's DNS name, or 127.0.0.1 in tests);
// at least one is required. now is the clock.
func IssueServingCert(caCert *x509.Certificate, caKey crypto.Signer, dnsNames []string, ips []netip.Addr, ttl time.Duration, now time.Time) (tls.Certificate, error) {
	if caCert == nil || caKey == nil {
		return tls.Certificate{}, errors.New("inject: IssueServingCert: CA certificate and key are required")
	}
	if len(dnsNames)+len(ips) == 0 {
		return tls.Certificate{}, errors.New("inject: IssueServingCert: no DNS name or IP; give the address the apiserver dials")
	}
	if ttl <= 0 {
		return tls.Certificate{}, fmt.Errorf("inject: IssueServingCert: ttl %v must be positive", ttl)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("inject: generating the serving key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("inject: generating a serial number: %w", err)
	}
	cn := "causeway-injector"
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)),
		Subject:      pkix.Name{Organization: []string{"Causeway"}, CommonName: cn},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(ttl),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dnsNames,
	}
	if tmpl.NotAfter.After(caCert.NotAfter) {
		tmpl.NotAfter = caCert.NotAfter
	}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(ip.AsSlice()))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("inject: signing the serving certificate with CA %q: %w", caCert.Subject.CommonName, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("inject: parsing the new serving certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
