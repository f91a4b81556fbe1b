package trustplane

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/causewaymesh/causeway/trust"
)

// SecretRoot reads the root CA a user keeps in a Kubernetes Secret
// ("namespace/name"), data keys ca.crt and ca.key (or tls.crt and tls.key,
// as cert-manager writes them), for Options.Root.
func SecretRoot(ctx context.Context, c corev1client.SecretsGetter, ref string) func() (*x509.Certificate, crypto.Signer, error) {
	return func() (*x509.Certificate, crypto.Signer, error) {
		ns, name, ok := strings.Cut(ref, "/")
		if !ok || ns == "" || name == "" {
			return nil, nil, fmt.Errorf("trustplane: CA secret %q: want namespace/name", ref)
		}
		sec, err := c.Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, nil, fmt.Errorf("trustplane: CA secret %s: %w (the control plane needs get on it)", ref, err)
		}
		for _, keys := range [][2]string{{"ca.crt", "ca.key"}, {"tls.crt", "tls.key"}} {
			cert, key := sec.Data[keys[0]], sec.Data[keys[1]]
			if len(cert) > 0 && len(key) > 0 {
				return trust.ParseCAPEM(cert, key, "secret "+ref+" key "+keys[0], "secret "+ref+" key "+keys[1])
			}
		}
		return nil, nil, fmt.Errorf("trustplane: CA secret %s has neither ca.crt+ca.key nor tls.crt+tls.key; put the root certificate and its key there", ref)
	}
}
