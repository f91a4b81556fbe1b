package testcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
)

// fieldManager is the server-side apply field manager of the harness.
const fieldManager = "testcluster"

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// applier server-side applies arbitrary objects, resolving kinds through
// discovery and refreshing it when a kind is new (a CRD just established).
type applier struct {
	mapper *restmapper.DeferredDiscoveryRESTMapper
	dyn    dynamic.Interface
}

func newApplier(dc discovery.DiscoveryInterface, dyn dynamic.Interface) *applier {
	return &applier{mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)), dyn: dyn}
}

// DecodeYAML splits multi-document YAML (or JSON) into objects, skipping
// empty documents.
func DecodeYAML(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for i := 0; ; i++ {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			return nil, fmt.Errorf("document %d: apiVersion and kind are required", i)
		}
		out = append(out, u)
	}
}

// Apply server-side applies every object in manifests (multi-document YAML),
// in order. Kinds unknown to discovery are retried until ctx ends, so a CRD
// and its custom resources can be applied together.
func (c *Cluster) Apply(ctx context.Context, manifests []byte) error {
	objs, err := DecodeYAML(manifests)
	if err != nil {
		return err
	}
	return c.applier.apply(ctx, objs)
}

// ApplyFile applies a YAML file, or every *.yaml/*.yml file under a
// directory in lexical order.
func (c *Cluster) ApplyFile(ctx context.Context, path string) error {
	objs, err := readManifests(path)
	if err != nil {
		return err
	}
	return c.applier.apply(ctx, objs)
}

func (a *applier) apply(ctx context.Context, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		if err := a.applyOne(ctx, o); err != nil {
			return err
		}
	}
	return nil
}

func (a *applier) applyOne(ctx context.Context, o *unstructured.Unstructured) error {
	gvk := o.GroupVersionKind()
	what := fmt.Sprintf("%s %s", gvk.Kind, objName(o))
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err == nil {
			var ri dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
			if m.Scope.Name() == meta.RESTScopeNameNamespace {
				ns := o.GetNamespace()
				if ns == "" {
					ns = "default"
				}
				ri = a.dyn.Resource(m.Resource).Namespace(ns)
			}
			if _, err := ri.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
				return fmt.Errorf("apply %s: %w", what, err)
			}
			return nil
		}
		if !meta.IsNoMatchError(err) {
			return fmt.Errorf("apply %s: %w", what, err)
		}
		a.mapper.Reset()
		select {
		case <-ctx.Done():
			return fmt.Errorf("apply %s: kind %s is not served (is its CRD installed?): %w", what, gvk, err)
		case <-tick.C:
		}
	}
}

func objName(o *unstructured.Unstructured) string {
	if ns := o.GetNamespace(); ns != "" {
		return ns + "/" + o.GetName()
	}
	return o.GetName()
}

// readManifests reads a YAML file or all YAML files under a directory.
func readManifests(path string) ([]*unstructured.Unstructured, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	files := []string{path}
	if fi.IsDir() {
		files = nil
		err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		sort.Strings(files)
	}
	var out []*unstructured.Unstructured
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if filepath.Base(f) == "kustomization.yaml" {
			continue // kustomize's index, not an object
		}
		objs, err := DecodeYAML(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, objs...)
	}
	return out, nil
}

// crdFiles lists what installCRDs applies from manifestsDir: the Gateway API
// channel, the MCS API, and every CustomResourceDefinition elsewhere under
// manifests/ (Causeway's own).
func crdObjects(manifestsDir, channel string) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	if channel != ChannelNone {
		gw, err := readManifests(filepath.Join(manifestsDir, "crds", "gateway-api", channel))
		if err != nil {
			return nil, fmt.Errorf("read the Gateway API CRDs: %w", err)
		}
		objs = append(objs, gw...)
	}
	mcs, err := readManifests(filepath.Join(manifestsDir, "crds", "mcs-api"))
	if err != nil {
		return nil, fmt.Errorf("read the MCS API CRDs: %w", err)
	}
	objs = append(objs, mcs...)
	third := filepath.Join(manifestsDir, "crds", "gateway-api") + string(filepath.Separator)
	mcsDir := filepath.Join(manifestsDir, "crds", "mcs-api") + string(filepath.Separator)
	var own []string
	err = filepath.WalkDir(manifestsDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (p+string(filepath.Separator) == third || p+string(filepath.Separator) == mcsDir) {
			return filepath.SkipDir
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			own = append(own, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(own)
	for _, f := range own {
		all, err := readManifests(f)
		if err != nil {
			return nil, err
		}
		for _, o := range all {
			if o.GetKind() == "CustomResourceDefinition" {
				objs = append(objs, o)
			}
		}
	}
	return objs, nil
}

// installCRDs applies the CRDs and waits until each is Established.
func (c *Cluster) installCRDs(ctx context.Context) error {
	if c.opts.SkipCRDs {
		return nil
	}
	dir := c.opts.ManifestsDir
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			return fmt.Errorf("find manifests/: %w; set Options.ManifestsDir or Options.SkipCRDs", err)
		}
		dir = filepath.Join(root, "manifests")
	}
	objs, err := crdObjects(dir, c.opts.GatewayAPIChannel)
	if err != nil {
		return err
	}
	// Independent objects: apply them concurrently (the apiserver spends
	// most of the time compiling each CRD's schema).
	errs := make([]error, len(objs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, o := range objs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = c.applier.applyOne(ctx, o)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.ReadyTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for _, o := range objs {
		if o.GetKind() != "CustomResourceDefinition" {
			continue
		}
		for {
			got, err := c.Dynamic.Resource(crdGVR).Get(ctx, o.GetName(), metav1.GetOptions{})
			if err == nil && crdEstablished(got) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("CRD %s not Established within %v (last error: %v)", o.GetName(), c.opts.ReadyTimeout, err)
			case <-tick.C:
			}
		}
	}
	return nil
}

func crdEstablished(u *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}
