package discovery

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	"sigs.k8s.io/yaml"

	"github.com/causewaymesh/causeway/federation/peerapi"
	"github.com/causewaymesh/causeway/internal/model"
	"github.com/causewaymesh/causeway/trust/policy"
)

// Folder is the local-mode Source: a directory of Kubernetes YAML.
//
// Every *.yaml, *.yml and *.json file under Dir (recursively; names
// starting with "." are skipped) may hold several documents separated by
// "---". Each document is decoded strictly (unknown fields are errors) with
// the real Kubernetes types: v1 Service, Pod, Node, Namespace,
// discovery.k8s.io/v1 EndpointSlice and multicluster.x-k8s.io/v1alpha1
// ServiceExport. Other kinds (Deployments, ...) are skipped; Gateway API
// objects and ServiceImports (read by controlplane.GatewayFolder) are only
// decoded strictly, so that a bad one rejects its file. A missing
// metadata.namespace means "default".
//
// Errors: a file that does not parse, or holds an object that fails
// validation, is rejected as a whole and reported as Problems naming the
// file, the document, the object (kind namespace/name) and the field; the
// file's previous good contents (if any) keep serving, so nothing of a bad
// file is half-applied. A deleted file removes its objects. An object
// defined in two files is taken from the first file in path order and the
// other is reported. An unreadable Dir is reported and the last good
// snapshot stays.
//
// Change detection: every Interval the folder is listed and each file
// stat-ed; a file is read and hashed (xxhash) only when its size or mtime
// changed or its mtime is within 2s of the previous scan (coarse mtimes);
// it is decoded only when its hash changed.
type Folder struct {
	o FolderOptions

	files    map[string]*fileState // by path relative to Dir; owned by Run/Scan
	last     *model.Snapshot
	peers    []*peerapi.Peer // last given to OnPeers; nil before the first
	given    []File          // last given to OnFiles; nil before the first
	lastScan time.Time

	mu       sync.Mutex
	problems []Problem
}

// FolderOptions configure a Folder.
type FolderOptions struct {
	Dir string
	BuildOptions
	// Interval between scans; default 500ms. Ignored when Tick is set.
	Interval time.Duration
	// Tick, when set, drives the scans instead of a time.Ticker (tests).
	Tick <-chan time.Time
	// Now is the clock; default time.Now.
	Now func() time.Time
	// OnPeers, when set, is called on Run's (or Scan's) goroutine with the
	// folder's valid Peer documents (federation links, sorted by name) on
	// the first scan and each time they change. Invalid ones are Problems.
	OnPeers func([]*peerapi.Peer)
	// OnFiles, when set, is called on Run's (or Scan's) goroutine with
	// every file the folder accepted (its last good contents, in path
	// order) on the first scan and each time one of them changes, before
	// the scan's snapshot is returned. controlplane.GatewayFolder reads the
	// Gateway API objects from them, so one scan feeds both.
	OnFiles func([]File)
	// OnProblems, when set, is called on Run's goroutine with the complete
	// current problem list each time it changes (empty when all is well).
	OnProblems func([]Problem)
	Logger     *slog.Logger
}

// Problem is one reason a file (or an object in it) was not applied.
type Problem struct {
	File     string // relative to Dir
	Document int    // 1-based document in the file; 0: the whole file
	Object   string // "Service shop/cart"; empty when unknown
	Field    string // "spec.ports[0].port"; empty when unknown
	Message  string
}

func (p Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Document > 0 {
		fmt.Fprintf(&b, ": document %d", p.Document)
	}
	if p.Object != "" {
		b.WriteString(": " + p.Object)
	}
	if p.Field != "" {
		b.WriteString(": " + p.Field)
	}
	b.WriteString(": " + p.Message)
	return b.String()
}

type fileState struct {
	size     int64
	modTime  time.Time
	hash     uint64
	good     *fileObjects // last good contents; nil if never good
	goodData []byte       // the bytes of good (OnFiles)
	goodHash uint64
	problems []Problem // of the current contents
}

// File is one file the Folder accepted, as OnFiles receives it: its last
// good contents, which every later problem leaves in place.
type File struct {
	Path string // relative to Dir, with the OS's separators
	Hash uint64 // xxhash of Data
	Data []byte // must not be modified
}

type objKey struct{ kind, namespace, name string }

type fileObjects struct {
	objs Objects
	keys []objKey
}

// NewFolder checks o and returns a Folder; nothing is read until Run or
// Scan.
func NewFolder(o FolderOptions) (*Folder, error) {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("folder source: Dir: required; name the directory of Kubernetes YAML"))
	}
	if o.Cluster == "" {
		errs = append(errs, errors.New("folder source: Cluster: required; name the cluster the folder describes"))
	}
	if o.Interval < 0 {
		errs = append(errs, fmt.Errorf("folder source: Interval %s: must not be negative", o.Interval))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.Interval == 0 {
		o.Interval = 500 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Folder{o: o, files: map[string]*fileState{}}, nil
}

// Run scans at once, emits the first snapshot, then rescans on every tick
// and emits each changed snapshot, until ctx ends.
func (f *Folder) Run(ctx context.Context, emit func(*model.Snapshot)) error {
	tick := f.o.Tick
	if tick == nil {
		t := time.NewTicker(f.o.Interval)
		defer t.Stop()
		tick = t.C
	}
	if s, changed := f.Scan(); changed {
		emit(s)
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick:
			if s, changed := f.Scan(); changed {
				emit(s)
			}
		}
	}
}

// Problems returns the current problems, sorted by file and document.
func (f *Folder) Problems() []Problem {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.problems)
}

// Scan reads the folder once and returns the current snapshot and whether
// it differs from the previous one (the first Scan always reports a
// change). Scan must not run concurrently with itself or Run.
func (f *Folder) Scan() (*model.Snapshot, bool) {
	start := f.o.Now()
	var problems []Problem
	seen := map[string]bool{}
	err := filepath.WalkDir(f.o.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if path != f.o.Dir && strings.HasPrefix(name, ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !isManifest(name) {
			return nil
		}
		rel, _ := filepath.Rel(f.o.Dir, path)
		seen[rel] = true
		f.refresh(rel, path, d)
		return nil
	})
	if err != nil {
		// Keep everything as it was: a folder being replaced or briefly
		// unreadable must not empty the mesh.
		problems = append(problems, Problem{File: f.o.Dir, Message: fmt.Sprintf("cannot read the folder: %v; serving the last good contents", err)})
		for rel := range f.files {
			seen[rel] = true
		}
	}
	for rel := range f.files {
		if !seen[rel] {
			delete(f.files, rel)
		}
	}
	f.lastScan = start

	rels := make([]string, 0, len(f.files))
	for rel := range f.files {
		rels = append(rels, rel)
	}
	slices.Sort(rels)
	var all Objects
	owner := map[objKey]string{}
	for _, rel := range rels {
		fst := f.files[rel]
		problems = append(problems, fst.problems...)
		if fst.good == nil {
			continue
		}
		dup := map[objKey]bool{}
		for _, k := range fst.good.keys {
			if first, ok := owner[k]; ok {
				dup[k] = true
				problems = append(problems, Problem{File: rel, Object: k.String(), Message: "also defined in " + first + "; this copy is ignored"})
				continue
			}
			owner[k] = rel
		}
		appendObjects(&all, &fst.good.objs, dup)
	}
	slices.SortStableFunc(problems, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Document, b.Document))
	})
	f.setProblems(problems)
	f.setPeers(all.Peers)
	f.giveFiles(rels)

	s := Build(&all, f.o.BuildOptions)
	if err := s.Validate(); err != nil {
		// Build only sees validated objects, so this is a bug; say so loudly
		// and keep serving the last good snapshot.
		f.o.Logger.Error("folder source: the model built from the folder is invalid (a bug); keeping the last good snapshot", "err", err)
		if f.last != nil {
			return f.last, false
		}
	}
	if f.last != nil && f.last.Equal(s) {
		return f.last, false
	}
	f.last = s
	return s, true
}

// giveFiles calls OnFiles when the accepted files differ from the last
// call (or on the first).
func (f *Folder) giveFiles(rels []string) {
	if f.o.OnFiles == nil {
		return
	}
	files := make([]File, 0, len(rels))
	for _, rel := range rels {
		if fst := f.files[rel]; fst.good != nil {
			files = append(files, File{Path: rel, Hash: fst.goodHash, Data: fst.goodData})
		}
	}
	same := f.given != nil && slices.EqualFunc(files, f.given, func(a, b File) bool { return a.Path == b.Path && a.Hash == b.Hash })
	if same {
		return
	}
	f.given = files
	f.o.OnFiles(slices.Clone(files))
}

func (f *Folder) setProblems(ps []Problem) {
	f.mu.Lock()
	same := slices.Equal(ps, f.problems)
	f.problems = ps
	f.mu.Unlock()
	if same {
		return
	}
	for _, p := range ps {
		f.o.Logger.Warn("folder source: not applied", "file", p.File, "document", p.Document, "object", p.Object, "field", p.Field, "problem", p.Message)
	}
	if f.o.OnProblems != nil {
		f.o.OnProblems(slices.Clone(ps))
	}
}

func (k objKey) String() string {
	if k.namespace == "" {
		return k.kind + " " + k.name
	}
	return k.kind + " " + k.namespace + "/" + k.name
}

func isManifest(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// refresh re-reads one file if it may have changed.
func (f *Folder) refresh(rel, path string, d fs.DirEntry) {
	fst := f.files[rel]
	info, err := d.Info()
	if err != nil {
		if fst != nil {
			fst.problems = []Problem{{File: rel, Message: fmt.Sprintf("cannot stat: %v; keeping its last good contents", err)}}
		}
		return
	}
	if fst != nil && fst.size == info.Size() && fst.modTime.Equal(info.ModTime()) &&
		info.ModTime().Before(f.lastScan.Add(-2*time.Second)) {
		return
	}
	if fst == nil {
		fst = &fileState{}
		f.files[rel] = fst
	}
	data, err := os.ReadFile(path)
	if err != nil {
		fst.problems = []Problem{{File: rel, Message: fmt.Sprintf("cannot read: %v; keeping its last good contents", err)}}
		return
	}
	fst.size, fst.modTime = info.Size(), info.ModTime()
	h := xxhash.Sum64(data)
	if h == fst.hash && (fst.good != nil || len(fst.problems) > 0) {
		return
	}
	fst.hash = h
	objs, problems := decodeFile(rel, data)
	if len(problems) > 0 {
		keep := "it has no earlier good contents"
		if fst.good != nil {
			keep = "its last good contents keep serving"
		}
		for i := range problems {
			problems[i].Message += " (file not applied; " + keep + ")"
		}
		fst.problems = problems
		return
	}
	fst.good, fst.problems = objs, nil
	if f.o.OnFiles != nil {
		fst.goodData, fst.goodHash = data, h
	}
}

// decodeFile decodes and validates every document of one manifest file. It
// returns the file's objects, or every problem found (then the objects must
// not be used).
func decodeFile(name string, data []byte) (*fileObjects, []Problem) {
	out := &fileObjects{}
	var problems []Problem
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for doc := 1; ; doc++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			problems = append(problems, Problem{File: name, Document: doc, Message: fmt.Sprintf("cannot split YAML documents: %v", err)})
			break
		}
		if len(bytes.TrimSpace(stripComments(raw))) == 0 {
			doc--
			continue
		}
		problems = append(problems, decodeDoc(name, doc, raw, out)...)
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return out, nil
}

func stripComments(b []byte) []byte {
	var out []byte
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(out, t...)
		}
	}
	return out
}

func decodeDoc(file string, doc int, raw []byte, out *fileObjects) []Problem {
	var head struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(raw, &head); err != nil {
		return []Problem{{File: file, Document: doc, Message: fmt.Sprintf("not valid YAML: %v", err)}}
	}
	ns := cmp.Or(head.Metadata.Namespace, metav1.NamespaceDefault)
	obj := head.Kind + " " + ns + "/" + head.Metadata.Name
	if head.APIVersion == "" || head.Kind == "" {
		return []Problem{{File: file, Document: doc, Object: strings.TrimSpace(obj), Field: "apiVersion/kind", Message: "required: every document needs apiVersion and kind"}}
	}
	var (
		target     any
		validate   func() []FieldProblem
		namespaced = true
		add        func()
	)
	switch head.APIVersion + "/" + head.Kind {
	case "v1/Service":
		o := &corev1.Service{}
		target, validate, add = o, func() []FieldProblem { return validateService(o) }, func() { out.objs.Services = append(out.objs.Services, o) }
	case "v1/Pod":
		o := &corev1.Pod{}
		target, validate, add = o, func() []FieldProblem { return validatePod(o) }, func() { out.objs.Pods = append(out.objs.Pods, o) }
	case "v1/Node":
		o := &corev1.Node{}
		namespaced = false
		target, validate, add = o, func() []FieldProblem { return validateNode(o) }, func() { out.objs.Nodes = append(out.objs.Nodes, o) }
	case "v1/Namespace":
		o := &corev1.Namespace{}
		namespaced = false
		target, validate, add = o, func() []FieldProblem { return validateNamespace(o) }, func() { out.objs.Namespaces = append(out.objs.Namespaces, o) }
	case "discovery.k8s.io/v1/EndpointSlice":
		o := &discoveryv1.EndpointSlice{}
		target, validate, add = o, func() []FieldProblem { return validateEndpointSlice(o) }, func() { out.objs.EndpointSlices = append(out.objs.EndpointSlices, o) }
	case "multicluster.x-k8s.io/v1alpha1/ServiceExport":
		o := &mcsv1alpha1.ServiceExport{}
		target, validate, add = o, func() []FieldProblem { return validateServiceExport(o) }, func() { out.objs.ServiceExports = append(out.objs.ServiceExports, o) }
	case policy.APIVersion + "/" + policy.Kind:
		o := &policy.AuthorizationPolicy{}
		target, validate, add = o, func() []FieldProblem { return validateAuthorizationPolicy(o) }, func() {
			out.objs.AuthorizationPolicies = append(out.objs.AuthorizationPolicies, o)
		}
	case peerapi.APIVersion + "/" + peerapi.Kind:
		o := &peerapi.Peer{}
		namespaced = false
		target, validate, add = o, func() []FieldProblem { return validatePeer(o) }, func() { out.objs.Peers = append(out.objs.Peers, o) }
	default: // not ours (Deployments, ...); Gateway API objects must decode (gatewayapi.go)
		return checkGatewayAPI(file, doc, raw, head.APIVersion, head.Kind, head.Metadata.Name, ns)
	}
	if !namespaced {
		obj = head.Kind + " " + head.Metadata.Name
	}
	if err := yaml.UnmarshalStrict(raw, target); err != nil {
		return []Problem{{File: file, Document: doc, Object: obj, Message: fmt.Sprintf("does not decode as %s %s: %v", head.APIVersion, head.Kind, trimJSONNoise(err))}}
	}
	if namespaced {
		m := target.(metav1.Object)
		m.SetNamespace(ns)
	}
	var problems []Problem
	for _, fp := range validate() {
		problems = append(problems, Problem{File: file, Document: doc, Object: obj, Field: fp.Field, Message: fp.Reason})
	}
	if len(problems) > 0 {
		return problems
	}
	add()
	k := objKey{kind: head.Kind, name: head.Metadata.Name}
	if namespaced {
		k.namespace = ns
	}
	out.keys = append(out.keys, k)
	return nil
}

func trimJSONNoise(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "error unmarshaling JSON: ")
	s = strings.TrimPrefix(s, "while decoding JSON: ")
	return s
}

func appendObjects(dst, src *Objects, skip map[objKey]bool) {
	keep := func(kind string, m metav1.Object) bool {
		return len(skip) == 0 || !skip[objKey{kind, m.GetNamespace(), m.GetName()}]
	}
	for _, o := range src.Namespaces {
		if keep("Namespace", &metav1.ObjectMeta{Name: o.Name}) {
			dst.Namespaces = append(dst.Namespaces, o)
		}
	}
	for _, o := range src.Services {
		if keep("Service", o) {
			dst.Services = append(dst.Services, o)
		}
	}
	for _, o := range src.EndpointSlices {
		if keep("EndpointSlice", o) {
			dst.EndpointSlices = append(dst.EndpointSlices, o)
		}
	}
	for _, o := range src.Nodes {
		if keep("Node", &metav1.ObjectMeta{Name: o.Name}) {
			dst.Nodes = append(dst.Nodes, o)
		}
	}
	for _, o := range src.Pods {
		if keep("Pod", o) {
			dst.Pods = append(dst.Pods, o)
		}
	}
	for _, o := range src.ServiceExports {
		if keep("ServiceExport", o) {
			dst.ServiceExports = append(dst.ServiceExports, o)
		}
	}
	for _, o := range src.AuthorizationPolicies {
		if keep(policy.Kind, o) {
			dst.AuthorizationPolicies = append(dst.AuthorizationPolicies, o)
		}
	}
	for _, o := range src.Peers {
		if keep(peerapi.Kind, &metav1.ObjectMeta{Name: o.Name}) {
			dst.Peers = append(dst.Peers, o)
		}
	}
}
