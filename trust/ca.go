package trust

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Defaults for CAOptions.Validity.
const (
	DefaultRootValidity         = 365 * 24 * time.Hour
	DefaultIntermediateValidity = 90 * 24 * time.Hour
	// MinCAValidity is the shortest CA lifetime accepted: a CA must outlive
	// at least a few minimum-TTL SVIDs.
	MinCAValidity = time.Hour
)

// File names used by (*CA).WriteFiles.
const (
	CACertFile = "ca.crt"     // the CA certificate (0644)
	CAKeyFile  = "ca.key"     // the CA private key, PKCS#8 (0600)
	BundleFile = "bundle.crt" // the trust anchors of the trust domain (0644)
)

// Sentinel errors, for errors.Is.
var (
	ErrKeyFilePermissions = errors.New("private key file is readable by group or others")
	ErrForeignTrustDomain = errors.New("SPIFFE ID is not in the CA's trust domain")
	ErrTTLTooShort        = errors.New("SVID TTL below the minimum")
	ErrBadCSR             = errors.New("invalid certificate signing request")
	ErrCAExpired          = errors.New("CA certificate is not valid now")
	ErrInvalidCA          = errors.New("invalid CA certificate or key")
)

// CAOptions configures a CA. The zero value is valid.
type CAOptions struct {
	// Validity is the CA certificate lifetime. Zero means DefaultRootValidity
	// for a self-signed root and DefaultIntermediateValidity for an
	// intermediate. An intermediate never outlives its root.
	Validity time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rand is the randomness source for keys and serial numbers; nil means
	// crypto/rand.Reader.
	Rand io.Reader
}

func (o CAOptions) withDefaults(defValidity time.Duration) (CAOptions, error) {
	if o.Validity == 0 {
		o.Validity = defValidity
	}
	if o.Validity < MinCAValidity {
		return o, fmt.Errorf("trust: CAOptions.Validity is %v; it must be at least %v (or 0 for the default %v)", o.Validity, MinCAValidity, defValidity)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	return o, nil
}

// CA signs X.509-SVIDs for one trust domain. It is immutable and safe for
// concurrent use.
type CA struct {
	td    spiffeid.TrustDomain
	cert  *x509.Certificate   // the signing certificate
	key   crypto.Signer       // the signing key; never printed
	chain []*x509.Certificate // intermediates appended after each leaf
	roots []*x509.Certificate // trust anchors (the bundle)
	now   func() time.Time
	rand  io.Reader
}

// NewSelfSignedCA creates a CA with a fresh ECDSA P-256 self-signed root for
// td.
func NewSelfSignedCA(td spiffeid.TrustDomain, opts CAOptions) (*CA, error) {
	if td.IsZero() {
		return nil, errors.New("trust: NewSelfSignedCA: trust domain is empty; pass spiffeid.RequireTrustDomainFromString(\"example.org\")")
	}
	opts, err := opts.withDefaults(DefaultRootValidity)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), opts.Rand)
	if err != nil {
		return nil, fmt.Errorf("trust: generating root key for trust domain %q: %w", td, err)
	}
	now := opts.Now()
	tmpl, err := caTemplate(td, "Causeway root CA", now, now.Add(opts.Validity), opts.Rand)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(opts.Rand, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("trust: self-signing root for trust domain %q: %w", td, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("trust: parsing new root for trust domain %q: %w", td, err)
	}
	return &CA{td: td, cert: cert, key: key, roots: []*x509.Certificate{cert}, now: opts.Now, rand: opts.Rand}, nil
}

// NewIntermediateCA creates a CA with a fresh ECDSA P-256 intermediate signed
// by rootCert/rootKey. The root becomes the trust anchor of the bundle and the
// intermediate is appended to every issued chain. The intermediate's NotAfter
// is clamped to the root's.
func NewIntermediateCA(td spiffeid.TrustDomain, rootCert *x509.Certificate, rootKey crypto.Signer, opts CAOptions) (*CA, error) {
	if td.IsZero() {
		return nil, errors.New("trust: NewIntermediateCA: trust domain is empty")
	}
	opts, err := opts.withDefaults(DefaultIntermediateValidity)
	if err != nil {
		return nil, err
	}
	now := opts.Now()
	if err := checkSigningCert(td, rootCert, rootKey, now); err != nil {
		return nil, fmt.Errorf("trust: NewIntermediateCA root: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), opts.Rand)
	if err != nil {
		return nil, fmt.Errorf("trust: generating intermediate key for trust domain %q: %w", td, err)
	}
	notAfter := now.Add(opts.Validity)
	if notAfter.After(rootCert.NotAfter) {
		notAfter = rootCert.NotAfter
	}
	tmpl, err := caTemplate(td, "Causeway intermediate CA", now, notAfter, opts.Rand)
	if err != nil {
		return nil, err
	}
	if tmpl.NotBefore.Before(rootCert.NotBefore) {
		tmpl.NotBefore = rootCert.NotBefore
	}
	tmpl.MaxPathLen, tmpl.MaxPathLenZero = 0, true
	der, err := x509.CreateCertificate(opts.Rand, tmpl, rootCert, key.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("trust: signing intermediate for trust domain %q with root %s: %w", td, Fingerprint(rootCert), err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("trust: parsing new intermediate for trust domain %q: %w", td, err)
	}
	return &CA{
		td: td, cert: cert, key: key,
		chain: []*x509.Certificate{cert},
		roots: []*x509.Certificate{rootCert},
		now:   opts.Now, rand: opts.Rand,
	}, nil
}

// NewCAFromChain makes a CA from a signing certificate issued elsewhere, such
// as a SPIRE downstream CA (NewDownstreamX509CA): chain is the signing
// certificate followed by any intermediates up to (not including) roots, key
// is the signing certificate's private key. It checks that chain[0] can sign
// for td now, that key is its key and that chain verifies to roots. Issued
// SVID chains carry chain after the leaf.
func NewCAFromChain(td spiffeid.TrustDomain, chain []*x509.Certificate, key crypto.Signer, roots []*x509.Certificate, opts CAOptions) (*CA, error) {
	if td.IsZero() {
		return nil, errors.New("trust: NewCAFromChain: trust domain is empty")
	}
	if len(chain) == 0 || len(roots) == 0 {
		return nil, fmt.Errorf("%w: NewCAFromChain needs the signing certificate and at least one root", ErrInvalidCA)
	}
	opts, err := opts.withDefaults(DefaultIntermediateValidity)
	if err != nil {
		return nil, err
	}
	now := opts.Now()
	if err := checkSigningCert(td, chain[0], key, now); err != nil {
		return nil, fmt.Errorf("trust: NewCAFromChain: %w", err)
	}
	vo := x509.VerifyOptions{Roots: x509.NewCertPool(), Intermediates: x509.NewCertPool(), CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	for _, r := range roots {
		vo.Roots.AddCert(r)
	}
	for _, c := range chain[1:] {
		vo.Intermediates.AddCert(c)
	}
	if _, err := chain[0].Verify(vo); err != nil {
		return nil, fmt.Errorf("%w: NewCAFromChain: %s does not chain to the given roots of %q: %w", ErrInvalidCA, Fingerprint(chain[0]), td.Name(), err)
	}
	return &CA{td: td, cert: chain[0], key: key, chain: slices.Clone(chain), roots: slices.Clone(roots), now: opts.Now, rand: opts.Rand}, nil
}

// Roots returns the CA's trust anchors (the bundle's certificates).
func (c *CA) Roots() []*x509.Certificate { return slices.Clone(c.roots) }

// Chain returns what follows each leaf the CA issues: the signing
// certificate and its intermediates (empty for a self-signed root).
func (c *CA) Chain() []*x509.Certificate { return slices.Clone(c.chain) }

// checkSigningCert checks that cert can sign for td at now and that key is its
// private key. Errors never include key material.
func checkSigningCert(td spiffeid.TrustDomain, cert *x509.Certificate, key crypto.Signer, now time.Time) error {
	switch {
	case cert == nil:
		return fmt.Errorf("%w: certificate is nil", ErrInvalidCA)
	case key == nil:
		return fmt.Errorf("%w: key is nil", ErrInvalidCA)
	case !cert.BasicConstraintsValid || !cert.IsCA:
		return fmt.Errorf("%w: certificate %s is not a CA (basicConstraints CA:TRUE missing)", ErrInvalidCA, Fingerprint(cert))
	case cert.KeyUsage&x509.KeyUsageCertSign == 0:
		return fmt.Errorf("%w: certificate %s lacks key usage keyCertSign", ErrInvalidCA, Fingerprint(cert))
	case now.Before(cert.NotBefore) || !now.Before(cert.NotAfter):
		return fmt.Errorf("%w: certificate %s is valid from %s to %s, not at %s", ErrCAExpired, Fingerprint(cert),
			cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return fmt.Errorf("%w: the private key does not match certificate %s", ErrInvalidCA, Fingerprint(cert))
	}
	for _, u := range cert.URIs {
		if u.Scheme != "spiffe" {
			continue
		}
		if u.Host != td.Name() {
			return fmt.Errorf("%w: certificate %s carries SPIFFE ID %q of another trust domain than %q", ErrInvalidCA, Fingerprint(cert), u.String(), td.Name())
		}
	}
	return nil
}

func caTemplate(td spiffeid.TrustDomain, cn string, now, notAfter time.Time, r io.Reader) (*x509.Certificate, error) {
	serial, err := newSerial(r)
	if err != nil {
		return nil, err
	}
	tdURL := &url.URL{Scheme: "spiffe", Host: td.Name()}
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Causeway"}, CommonName: cn + " " + td.Name()},
		NotBefore:             now.Add(-ClockSkew),
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		URIs:                  []*url.URL{tdURL},
	}, nil
}

func newSerial(r io.Reader) (*big.Int, error) {
	serial, err := rand.Int(r, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("trust: generating certificate serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}

// LoadCAFiles reads a CA certificate and its private key from PEM files, for
// use as the root of NewIntermediateCA. The key file must not be readable by
// group or others. The key may be PKCS#8, SEC 1 (EC) or PKCS#1 (RSA). Errors
// name the file and never include key bytes.
func LoadCAFiles(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	fi, err := os.Stat(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("trust: CA key file: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, nil, fmt.Errorf("trust: CA key file %s has mode %04o: %w; run chmod 600 %s", keyPath, perm, ErrKeyFilePermissions, keyPath)
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, fmt.Errorf("trust: CA certificate file: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("trust: CA key file: %w", err)
	}
	defer clear(keyPEM)
	return ParseCAPEM(certPEM, keyPEM, "file "+certPath, "file "+keyPath)
}

// ParseCAPEM parses a CA certificate and its matching private key from PEM
// (the content of LoadCAFiles' files, or of a Kubernetes Secret's data).
// certSrc and keySrc name where they came from, for errors; errors never
// include key bytes.
func ParseCAPEM(certPEM, keyPEM []byte, certSrc, keySrc string) (*x509.Certificate, crypto.Signer, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("%w: CA certificate %s: no PEM CERTIFICATE block at the start", ErrInvalidCA, certSrc)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: CA certificate %s: %w", ErrInvalidCA, certSrc, err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		// err is built by parseKeyPEM from fixed strings only.
		return nil, nil, fmt.Errorf("%w: CA key %s: %w", ErrInvalidCA, keySrc, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("%w: the key in %s does not match the certificate in %s (%s)", ErrInvalidCA, keySrc, certSrc, Fingerprint(cert))
	}
	return cert, key, nil
}

// parseKeyPEM parses the first private key PEM block. Its errors deliberately
// do not wrap the parser's errors, so that no key bytes can leak.
func parseKeyPEM(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block type %q is not PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("PEM block %q does not parse as a private key", block.Type)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("PEM block %q holds a key of type %T that cannot sign", block.Type, key)
	}
	return s, nil
}

// WriteFiles writes the CA certificate (CACertFile, 0644), its private key
// (CAKeyFile, PKCS#8, 0600) and the bundle (BundleFile, 0644) into dir,
// creating dir with mode 0700 if needed. Each file is replaced atomically.
func (c *CA) WriteFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("trust: CA directory: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.key)
	if err != nil {
		return fmt.Errorf("trust: encoding the CA key of trust domain %q as PKCS#8 failed (key type %T)", c.td, c.key)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	clear(keyDER)
	defer clear(keyPEM)
	if err := writeFileAtomic(filepath.Join(dir, CACertFile), CertsPEM([]*x509.Certificate{c.cert}), 0o644); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, CAKeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, BundleFile), c.BundlePEM(), 0o644)
}

// writeFileAtomic writes data to a temporary file created 0600 in the same
// directory, sets mode, and renames it over path. Errors never include data.
func writeFileAtomic(path string, data []byte, mode os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("trust: writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Chmod(mode); err != nil {
		return fmt.Errorf("trust: writing %s: %w", path, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("trust: writing %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("trust: writing %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("trust: writing %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("trust: writing %s: %w", path, err)
	}
	return nil
}

// TrustDomain is the CA's trust domain.
func (c *CA) TrustDomain() spiffeid.TrustDomain { return c.td }

// Certificate is the CA's signing certificate (the root itself for a
// self-signed CA). Callers must not modify it.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// String shows the trust domain and certificate fingerprints only; never the
// key.
func (c CA) String() string {
	if c.cert == nil {
		return "trust.CA{}"
	}
	root := ""
	if len(c.roots) > 0 {
		root = Fingerprint(c.roots[0])
	}
	return fmt.Sprintf("trust.CA{trust_domain=%s cert_sha256=%s root_sha256=%s not_after=%s}",
		c.td.Name(), Fingerprint(c.cert), root, c.cert.NotAfter.UTC().Format(time.RFC3339))
}

// GoString is String, so that %#v cannot print the key either.
func (c CA) GoString() string { return c.String() }
