package controlplane

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/causewaymesh/causeway/discovery"
	"github.com/causewaymesh/causeway/gateway"
	"github.com/causewaymesh/causeway/internal/model"
)

// GatewayFolder is the Gateway API half of local mode: it reads the
// Gateway API objects (GatewayClass, Gateway, HTTPRoute, GRPCRoute,
// TLSRoute, ReferenceGrant), the MCS ServiceImports and the Services,
// Namespaces and Secrets they refer to from the files of the folder that
// discovery.Folder accepted, which the Folder hands to Feed
// (FolderOptions.OnFiles) from the same scan that builds its snapshot. It
// runs gateway.Translate on them and hands the route tables to OnRoutes
// (Merger.SetRoutes) whenever a file changed.
//
// Errors: a file that discovery.Folder rejects (discovery.CheckFile: it
// also decodes the Gateway API documents strictly) never reaches Feed; its
// last good contents keep serving here as there. A file whose documents do
// not decode here (gateway.DecodeYAML: Secrets, which the Folder skips) is
// rejected as a whole, keeping its last good contents. A route, Gateway or
// GatewayClass whose status is not Accepted (routes: and ResolvedRefs;
// Gateways: and Programmed) is reported with the file that defines it and
// the condition's reason and message. Both are Problems; everything else
// keeps serving. The problems discovery.Folder reports are not repeated
// here.
//
// Concurrency: Feed on one goroutine (the Folder's); Problems from any.
type GatewayFolder struct {
	o       GatewayFolderOptions
	files   map[string]*gwFile // by path relative to Dir; owned by Feed
	started bool

	mu       sync.Mutex
	problems []discovery.Problem
}

// GatewayFolderOptions configure a GatewayFolder.
type GatewayFolderOptions struct {
	// Dir is the folder, named in problems that belong to no one file.
	Dir string
	// OnRoutes receives the route tables on the first Feed and after each
	// change of the folder's inputs. Required.
	OnRoutes func([]model.RouteTable)
	// Now is the clock; default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

type gwFile struct {
	hash     uint64         // of the contents last fed
	good     *gateway.Input // last good contents; nil if never good
	problems []discovery.Problem
}

// NewGatewayFolder checks o; nothing happens until Feed.
func NewGatewayFolder(o GatewayFolderOptions) (*GatewayFolder, error) {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("gateway folder: Dir: required; name the directory of Kubernetes YAML"))
	}
	if o.OnRoutes == nil {
		errs = append(errs, errors.New("gateway folder: OnRoutes: required; pass the Merger's SetRoutes"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &GatewayFolder{o: o, files: map[string]*gwFile{}}, nil
}

// Problems returns the current problems, sorted by file.
func (g *GatewayFolder) Problems() []discovery.Problem {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.problems)
}

// Feed takes the folder's accepted files (discovery.FolderOptions.OnFiles);
// when one changed (or on the first call) it translates and calls
// OnRoutes. It reports whether it did.
func (g *GatewayFolder) Feed(files []discovery.File) bool {
	start := g.o.Now()
	changed := !g.started
	seen := make(map[string]bool, len(files))
	for _, file := range files {
		seen[file.Path] = true
		if g.decode(file) {
			changed = true
		}
	}
	for rel := range g.files {
		if !seen[rel] {
			delete(g.files, rel)
			changed = true
		}
	}
	if !changed {
		return false
	}
	g.started = true

	rels := slices.Sorted(maps.Keys(g.files))
	var problems []discovery.Problem
	var in gateway.Input
	owner := map[string]string{} // "Kind ns/name" -> file, for Gateway API kinds
	claim := func(rel, kind string, m metav1.Object) bool {
		k := kind + " " + m.GetNamespace() + "/" + m.GetName()
		if first, ok := owner[k]; ok {
			problems = append(problems, discovery.Problem{File: rel, Object: strings.Replace(k, " /", " ", 1), Message: "also defined in " + first + "; this copy is ignored"})
			return false
		}
		owner[k] = rel
		return true
	}
	for _, rel := range rels {
		f := g.files[rel]
		problems = append(problems, f.problems...)
		if f.good == nil {
			continue
		}
		appendInput(&in, f.good, func(kind string, m metav1.Object) bool { return claim(rel, kind, m) })
	}
	in.Now = start
	out, err := gateway.Translate(in)
	if err != nil {
		problems = append(problems, discovery.Problem{File: g.o.Dir, Message: fmt.Sprintf("Gateway API translation failed: %v; routes not changed", err)})
		g.setProblems(problems)
		return false
	}
	fileOf := func(kind, ns, name string) string {
		if ns != "" {
			ns += "/"
		}
		return cmp.Or(owner[kind+" "+ns+name], g.o.Dir)
	}
	for _, s := range out.GatewayClasses {
		problems = append(problems, conditionProblems(fileOf("GatewayClass", "", s.Name), "GatewayClass "+s.Name, "", s.Status.Conditions, gatewayv1.GatewayClassConditionStatusAccepted)...)
	}
	for _, s := range out.Gateways {
		file, obj := fileOf("Gateway", s.Namespace, s.Name), "Gateway "+s.Namespace+"/"+s.Name
		problems = append(problems, conditionProblems(file, obj, "", s.Status.Conditions, gatewayv1.GatewayConditionAccepted, gatewayv1.GatewayConditionProgrammed)...)
		for _, l := range s.Status.Listeners {
			problems = append(problems, conditionProblems(file, obj, "listener "+string(l.Name), l.Conditions, gatewayv1.ListenerConditionAccepted, gatewayv1.ListenerConditionResolvedRefs)...)
		}
	}
	for kind, ss := range map[string][]gateway.RouteStatus{"HTTPRoute": out.HTTPRoutes, "GRPCRoute": out.GRPCRoutes, "TLSRoute": out.TLSRoutes} {
		for _, s := range ss {
			file, obj := fileOf(kind, s.Namespace, s.Name), kind+" "+s.Namespace+"/"+s.Name
			for _, p := range s.Status.Parents {
				problems = append(problems, conditionProblems(file, obj, "parentRef "+parentName(p.ParentRef), p.Conditions, gatewayv1.RouteConditionAccepted, gatewayv1.RouteConditionResolvedRefs)...)
			}
		}
	}
	slices.SortStableFunc(problems, func(a, b discovery.Problem) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Document, b.Document), cmp.Compare(a.Object, b.Object), cmp.Compare(a.Field, b.Field))
	})
	g.setProblems(problems)
	g.o.OnRoutes(out.Routes)
	return true
}

// conditionProblems reports each of types whose condition is not True.
func conditionProblems[T ~string](file, obj, field string, conds []metav1.Condition, types ...T) []discovery.Problem {
	var ps []discovery.Problem
	for _, c := range conds {
		if c.Status == metav1.ConditionTrue || !slices.Contains(types, T(c.Type)) {
			continue
		}
		ps = append(ps, discovery.Problem{File: file, Object: obj, Field: field,
			Message: fmt.Sprintf("%s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message)})
	}
	return ps
}

func parentName(p gatewayv1.ParentReference) string {
	kind := "Gateway"
	if p.Kind != nil {
		kind = string(*p.Kind)
	}
	s := kind + " " + string(p.Name)
	if p.Port != nil {
		s += fmt.Sprintf(":%d", *p.Port)
	}
	return s
}

func (g *GatewayFolder) setProblems(ps []discovery.Problem) {
	g.mu.Lock()
	same := slices.Equal(ps, g.problems)
	g.problems = ps
	g.mu.Unlock()
	if same {
		return
	}
	for _, p := range ps {
		g.o.Logger.Warn("gateway folder: problem", "file", p.File, "object", p.Object, "field", p.Field, "problem", p.Message)
	}
}

// decode decodes a file whose contents changed since the last Feed and
// reports whether they did.
func (g *GatewayFolder) decode(file discovery.File) bool {
	f := g.files[file.Path]
	if f != nil && f.hash == file.Hash {
		return false
	}
	if f == nil {
		f = &gwFile{}
		g.files[file.Path] = f
	}
	f.hash = file.Hash
	in, err := gateway.DecodeYAML(file.Data)
	if err != nil { // what discovery.Folder does not read (Secrets)
		keep := "it has no earlier good contents"
		if f.good != nil {
			keep = "its last good contents keep serving"
		}
		f.problems = f.problems[:0]
		for _, e := range unjoin(err) {
			f.problems = append(f.problems, discovery.Problem{File: file.Path, Message: e.Error() + " (file not applied; " + keep + ")"})
		}
		return true
	}
	f.good, f.problems = &in, nil
	return true
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// appendInput appends src's objects to dst; keep decides, for the Gateway
// API kinds and ServiceImports, whether an object is the first of its name.
func appendInput(dst, src *gateway.Input, keep func(kind string, m metav1.Object) bool) {
	dst.GatewayClasses = appendKept(dst.GatewayClasses, src.GatewayClasses, "GatewayClass", keep)
	dst.Gateways = appendKept(dst.Gateways, src.Gateways, "Gateway", keep)
	dst.HTTPRoutes = appendKept(dst.HTTPRoutes, src.HTTPRoutes, "HTTPRoute", keep)
	dst.GRPCRoutes = appendKept(dst.GRPCRoutes, src.GRPCRoutes, "GRPCRoute", keep)
	dst.TLSRoutes = appendKept(dst.TLSRoutes, src.TLSRoutes, "TLSRoute", keep)
	dst.ReferenceGrants = appendKept(dst.ReferenceGrants, src.ReferenceGrants, "ReferenceGrant", keep)
	dst.ServiceImports = appendKept(dst.ServiceImports, src.ServiceImports, "ServiceImport", keep)
	dst.Services = append(dst.Services, src.Services...)
	dst.Namespaces = append(dst.Namespaces, src.Namespaces...)
	dst.Secrets = append(dst.Secrets, src.Secrets...)
}

// appendKept appends the objects of src that keep accepts to dst.
func appendKept[T any, P interface {
	*T
	metav1.Object
}](dst, src []T, kind string, keep func(kind string, m metav1.Object) bool) []T {
	for i := range src {
		if keep(kind, P(&src[i])) {
			dst = append(dst, src[i])
		}
	}
	return dst
}
