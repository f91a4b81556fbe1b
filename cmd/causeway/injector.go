package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"log/slog"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"

	"github.com/causewaymesh/causeway/internal/inject"
	"github.com/causewaymesh/causeway/internal/trustplane"
	"github.com/causewaymesh/causeway/trust"
)

// validateInjector checks the --injector-* flags of `causeway control-plane`.
func (c *controlPlaneConfig) validateInjector() []error {
	if c.Injector.Listen == "" {
		return nil
	}
	var errs []error
	if !c.MTLS {
		errs = append(errs, errors.New("--injector-listen: needs --mtls (the webhook's serving certificate is signed by the root CA)"))
	}
	if c.Source != "kubernetes" {
		errs = append(errs, errors.New("--injector-listen: only with --source kubernetes (pods are admitted by an apiserver)"))
	}
	if err := c.Injector.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// startInjector starts the sidecar injection webhook (internal/inject.Server)
// with a serving certificate from the same root CA as the trust plane: the
// Secret of --ca-secret, else the files of --ca-dir.
func startInjector(c *controlPlaneConfig, reg prometheus.Registerer, log *slog.Logger) (*inject.Server, error) {
	rc, err := kubeConfig(c.Kubeconfig)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	root := func() (*x509.Certificate, crypto.Signer, error) {
		return trust.LoadCAFiles(filepath.Join(c.CADir, trust.CACertFile), filepath.Join(c.CADir, trust.CAKeyFile))
	}
	if c.CASecret != "" {
		root = trustplane.SecretRoot(context.Background(), cs.CoreV1(), c.CASecret)
	}
	cfg := c.Injector
	cfg.Inject.Cluster, cfg.Inject.Network, cfg.Inject.Version = c.Cluster, c.Network, version
	cfg.Inject.TrustDomain = c.TrustDomain
	return inject.NewServer(inject.ServerOptions{Config: cfg, Root: root, Client: cs, Registerer: reg, Logger: log})
}
