// Command leanxds generates proxy/leanxds: the sidecar's own Go types for
// the xDS messages it decodes, a wire-compatible subset of Envoy's API.
//
// go-control-plane's generated packages register every message of every
// Envoy file they import, with its validation code, and the sidecar linked
// megabytes of code and descriptors it never used. leanxds reads
// go-control-plane's own descriptors (so field numbers, types, JSON names and
// protoc-gen-validate rules are Envoy's, at the version in go.mod), keeps the
// messages listed in messages.txt, and renames their proto packages under
// "causeway.lean." so the copies never clash with the originals in a binary
// that links both (the control plane, tests). A kept message keeps every
// field; the fields messages.txt lists keep their types and validation
// rules, and every other message-typed field becomes a causeway.lean.Unread
// (an empty message: presence kept, contents left as unknown bytes), so the
// sidecar can still see that it is set and refuse it. It then runs protoc-gen-go and protoc-gen-validate on the result, as
// protoc would.
//
//	go run ./hack/leanxds            regenerate proxy/leanxds
//	go run ./hack/leanxds -check     fail if proxy/leanxds is out of date
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/envoyproxy/protoc-gen-validate/validate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"

	// The Envoy packages whose messages messages.txt may name.
	_ "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	_ "google.golang.org/genproto/googleapis/rpc/status"
)

const (
	leanPrefix = "causeway.lean."
	goModule   = "github.com/causewaymesh/causeway"
	outDir     = "proxy/leanxds"

	// Unread stands for a message field the sidecar does not read: it
	// keeps the field's presence (and, as unknown fields, its bytes).
	unreadName = leanPrefix + "Unread"
	unreadPath = outDir + "/unread.proto"
)

// unreadFile declares Unread, in package leanxds itself.
func unreadFile() *descriptorpb.FileDescriptorProto {
	return &descriptorpb.FileDescriptorProto{
		Name:        proto.String(unreadPath),
		Package:     proto.String(strings.TrimSuffix(leanPrefix, ".")),
		Syntax:      proto.String("proto3"),
		Options:     &descriptorpb.FileOptions{GoPackage: proto.String(goModule + "/" + outDir + ";leanxds")},
		MessageType: []*descriptorpb.DescriptorProto{{Name: proto.String("Unread")}},
	}
}

func main() {
	check := flag.Bool("check", false, "regenerate into a scratch directory and fail if "+outDir+" differs")
	list := flag.String("messages", "hack/leanxds/messages.txt", "the messages to keep")
	bin := flag.String("bin", "bin", "where protoc-gen-go and protoc-gen-validate are")
	flag.Parse()
	if err := run(*list, *bin, *check); err != nil {
		fmt.Fprintln(os.Stderr, "leanxds:", err)
		os.Exit(1)
	}
}

func run(list, bin string, check bool) error {
	names, reads, err := readList(list)
	if err != nil {
		return err
	}
	g := newGen(reads)
	for _, n := range names {
		if err := g.keep(n); err != nil {
			return err
		}
	}
	goReq, pgvReq, docs := g.requests()
	if len(g.errs) > 0 {
		return errors.Join(g.errs...)
	}
	files := map[string][]byte{}
	for _, p := range []struct {
		plugin string
		req    *pluginpb.CodeGeneratorRequest
	}{{"protoc-gen-go", goReq}, {"protoc-gen-validate", pgvReq}} {
		if err := runPlugin(filepath.Join(bin, p.plugin), p.req, files); err != nil {
			return err
		}
	}
	for name, b := range docs {
		files[name] = b
	}
	if check {
		return compare(files)
	}
	if err := os.RemoveAll(outDir + "/envoy"); err != nil {
		return err
	}
	for name, b := range files {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(name, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// readList reads messages.txt: the kept messages in order, and the fields
// read of each (nil: every field).
func readList(name string) ([]protoreflect.FullName, map[protoreflect.FullName]map[string]bool, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var names []protoreflect.FullName
	reads := map[protoreflect.FullName]map[string]bool{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		n := protoreflect.FullName(fields[0])
		if _, dup := reads[n]; dup {
			return nil, nil, fmt.Errorf("%s:%d: %s is listed twice", name, line, n)
		}
		names = append(names, n)
		reads[n] = map[string]bool{}
		for _, f := range fields[1:] {
			if f == "*" {
				reads[n] = nil
				break
			}
			reads[n][f] = true
		}
	}
	return names, reads, sc.Err()
}

// gen collects the kept declarations, grouped into one lean file per Envoy
// proto package.
type gen struct {
	reads map[protoreflect.FullName]map[string]bool // messages.txt
	kept  map[protoreflect.FullName]bool            // messages and enums
	pkgs  map[protoreflect.FullName]*leanFile
	errs  []error
	order []protoreflect.FullName // packages in the order first seen
}

type leanFile struct {
	pkg      protoreflect.FullName // the Envoy package
	goPkg    string                // its Go package name, as go-control-plane names it
	messages []protoreflect.MessageDescriptor
	enums    []protoreflect.EnumDescriptor
	deps     map[string]bool // files this one imports
}

func newGen(reads map[protoreflect.FullName]map[string]bool) *gen {
	return &gen{reads: reads, kept: map[protoreflect.FullName]bool{}, pkgs: map[protoreflect.FullName]*leanFile{}}
}

// keep keeps a listed message: a top-level one goes into its package's lean
// file, a nested one into its parent, which must be listed too.
func (g *gen) keep(name protoreflect.FullName) error {
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
	if err != nil {
		return fmt.Errorf("messages.txt: %s: %v (is its Go package imported by hack/leanxds?)", name, err)
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		return fmt.Errorf("messages.txt: %s is not a message", name)
	}
	for f := range g.reads[name] {
		if md.Fields().ByName(protoreflect.Name(f)) == nil {
			return fmt.Errorf("messages.txt: %s has no field %q", name, f)
		}
	}
	if parent, ok := md.Parent().(protoreflect.MessageDescriptor); ok {
		if _, listed := g.reads[parent.FullName()]; !listed {
			return fmt.Errorf("messages.txt: %s is nested in %s, which is not listed", name, parent.FullName())
		}
	} else {
		f := g.file(md.ParentFile())
		f.messages = append(f.messages, md)
	}
	g.kept[name] = true
	for i := 0; i < md.Enums().Len(); i++ {
		g.kept[md.Enums().Get(i).FullName()] = true
	}
	return nil
}

func (g *gen) file(fd protoreflect.FileDescriptor) *leanFile {
	pkg := fd.Package()
	f := g.pkgs[pkg]
	if f == nil {
		goPkg := fd.Options().(*descriptorpb.FileOptions).GetGoPackage()
		if i := strings.LastIndexByte(goPkg, ';'); i >= 0 {
			goPkg = goPkg[i+1:]
		} else {
			goPkg = path.Base(goPkg)
		}
		f = &leanFile{pkg: pkg, goPkg: goPkg, deps: map[string]bool{}}
		g.pkgs[pkg] = f
		g.order = append(g.order, pkg)
	}
	return f
}

func external(name protoreflect.FullName) bool {
	return strings.HasPrefix(string(name), "google.protobuf.") || name == "google.rpc.Status"
}

func leanPath(pkg protoreflect.FullName) string {
	return outDir + "/" + strings.ReplaceAll(string(pkg), ".", "/") + "/lean.proto"
}

// read reports whether the sidecar reads field fd of a kept message.
func (g *gen) read(fd protoreflect.FieldDescriptor) bool {
	parent := fd.ContainingMessage()
	if parent.IsMapEntry() {
		return true // the map field itself was read
	}
	fields := g.reads[parent.FullName()]
	return fields == nil || fields[string(fd.Name())]
}

// field converts one field of a kept message. withRules keeps its
// protoc-gen-validate rules (only for the validate plugin's copy). A
// message field that is not read, or whose type is not kept, becomes an
// Unread message (repeated for a map or a list).
func (g *gen) field(fd protoreflect.FieldDescriptor, self *leanFile, withRules bool) *descriptorpb.FieldDescriptorProto {
	p := protodesc.ToFieldDescriptorProto(fd)
	rules := p.GetOptions() // the validation rules, and whether it is deprecated
	p.Options = nil
	read := g.read(fd)
	unread := func() {
		p.TypeName, read = proto.String("."+unreadName), false
		self.deps[unreadPath] = true
	}
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		switch t := fd.Message(); {
		case !read:
			unread()
		case external(t.FullName()):
			self.deps[t.ParentFile().Path()] = true
		case t.IsMapEntry() || g.kept[t.FullName()]:
			p.TypeName = proto.String("." + leanPrefix + string(t.FullName()))
			if t.ParentFile().Package() != self.pkg {
				self.deps[leanPath(t.ParentFile().Package())] = true
			}
		default:
			unread()
		}
	case protoreflect.EnumKind:
		switch t := fd.Enum(); {
		case external(t.FullName()):
			self.deps[t.ParentFile().Path()] = true
		case g.kept[t.FullName()] || t.Parent() == t.ParentFile():
			if !g.kept[t.FullName()] { // a top-level enum: keep it too
				g.kept[t.FullName()] = true
				f := g.file(t.ParentFile())
				f.enums = append(f.enums, t)
			}
			p.TypeName = proto.String("." + leanPrefix + string(t.FullName()))
			if t.ParentFile().Package() != self.pkg {
				self.deps[leanPath(t.ParentFile().Package())] = true
			}
		default:
			g.errs = append(g.errs, fmt.Errorf("messages.txt: %s has the type %s, nested in a message that is not listed: list it", fd.FullName(), t.FullName()))
		}
	}
	if rules.GetDeprecated() { // so Go's tools still warn
		p.Options = &descriptorpb.FieldOptions{Deprecated: proto.Bool(true)}
	}
	if withRules && read && rules != nil && proto.HasExtension(rules, validate.E_Rules) {
		if p.Options == nil {
			p.Options = &descriptorpb.FieldOptions{}
		}
		proto.SetExtension(p.Options, validate.E_Rules, proto.GetExtension(rules, validate.E_Rules))
	}
	return p
}

func (g *gen) message(md protoreflect.MessageDescriptor, self *leanFile, withRules bool) *descriptorpb.DescriptorProto {
	orig := protodesc.ToDescriptorProto(md)
	p := &descriptorpb.DescriptorProto{Name: orig.Name}
	if orig.GetOptions().GetMapEntry() {
		p.Options = &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)}
	}
	if withRules {
		for _, x := range []protoreflect.ExtensionType{validate.E_Disabled, validate.E_Ignored} {
			if o := orig.GetOptions(); o != nil && proto.HasExtension(o, x) {
				if p.Options == nil {
					p.Options = &descriptorpb.MessageOptions{}
				}
				proto.SetExtension(p.Options, x, proto.GetExtension(o, x))
			}
		}
	}
	for i := 0; i < md.Fields().Len(); i++ {
		fd := md.Fields().Get(i)
		p.Field = append(p.Field, g.field(fd, self, withRules))
		if fd.IsMap() && g.read(fd) {
			p.NestedType = append(p.NestedType, g.message(fd.Message(), self, withRules))
		}
	}
	for _, o := range orig.OneofDecl {
		od := &descriptorpb.OneofDescriptorProto{Name: o.Name}
		if withRules && o.GetOptions() != nil && proto.HasExtension(o.GetOptions(), validate.E_Required) {
			od.Options = &descriptorpb.OneofOptions{}
			proto.SetExtension(od.Options, validate.E_Required, proto.GetExtension(o.GetOptions(), validate.E_Required))
		}
		p.OneofDecl = append(p.OneofDecl, od)
	}
	for i := 0; i < md.Messages().Len(); i++ {
		if n := md.Messages().Get(i); g.kept[n.FullName()] {
			p.NestedType = append(p.NestedType, g.message(n, self, withRules))
		}
	}
	for i := 0; i < md.Enums().Len(); i++ {
		p.EnumType = append(p.EnumType, enum(md.Enums().Get(i)))
	}
	return p
}

func enum(ed protoreflect.EnumDescriptor) *descriptorpb.EnumDescriptorProto {
	orig := protodesc.ToEnumDescriptorProto(ed)
	p := &descriptorpb.EnumDescriptorProto{Name: orig.Name}
	for _, v := range orig.Value {
		p.Value = append(p.Value, &descriptorpb.EnumValueDescriptorProto{Name: v.Name, Number: v.Number})
	}
	return p
}

// requests builds the two plugin requests (Go types without validation
// options, so the generated code never imports validate.proto; and the same
// files with the rules, for protoc-gen-validate) and one doc.go per package.
func (g *gen) requests() (goReq, pgvReq *pluginpb.CodeGeneratorRequest, docs map[string][]byte) {
	build := func(withRules bool) map[string]*descriptorpb.FileDescriptorProto {
		out := map[string]*descriptorpb.FileDescriptorProto{}
		// Converting fields can keep more top-level enums, in any package:
		// convert until no package grows.
		for done := map[protoreflect.FullName]int{}; ; {
			grew := false
			for _, pkg := range g.order {
				f := g.pkgs[pkg]
				if n := len(f.messages) + len(f.enums); done[pkg] != n {
					done[pkg], grew = n, true
				}
			}
			for _, pkg := range g.order {
				out[leanPath(pkg)] = g.fileProto(g.pkgs[pkg], withRules)
			}
			if !grew {
				return out
			}
		}
	}
	goFiles, pgvFiles := build(false), build(true)
	goFiles[unreadPath], pgvFiles[unreadPath] = unreadFile(), unreadFile()
	for _, f := range pgvFiles {
		f.Dependency = append(f.Dependency, "validate/validate.proto")
	}
	docs = map[string][]byte{}
	for _, pkg := range g.order {
		f := g.pkgs[pkg]
		dir := path.Dir(leanPath(pkg))
		docs[dir+"/doc.go"] = []byte(fmt.Sprintf(`// Code generated by hack/leanxds. DO NOT EDIT.

// Package %s holds the sidecar's lean copy of the Envoy proto package
// %s: the messages hack/leanxds/messages.txt names, wire-compatible with
// Envoy's, renamed to %s%s so they never clash with go-control-plane's.
// See package leanxds.
package %s
`, f.goPkg, pkg, leanPrefix, pkg, f.goPkg))
	}
	return request(goFiles, "paths=source_relative"), request(pgvFiles, "lang=go,paths=source_relative"), docs
}

func (g *gen) fileProto(f *leanFile, withRules bool) *descriptorpb.FileDescriptorProto {
	f.deps = map[string]bool{}
	p := &descriptorpb.FileDescriptorProto{
		Name:    proto.String(leanPath(f.pkg)),
		Package: proto.String(leanPrefix + string(f.pkg)),
		Syntax:  proto.String("proto3"),
		Options: &descriptorpb.FileOptions{
			GoPackage: proto.String(goModule + "/" + path.Dir(leanPath(f.pkg)) + ";" + f.goPkg),
		},
	}
	for _, m := range f.messages {
		p.MessageType = append(p.MessageType, g.message(m, f, withRules))
	}
	for _, e := range f.enums {
		p.EnumType = append(p.EnumType, enum(e))
	}
	deps := make([]string, 0, len(f.deps))
	for d := range f.deps {
		if d != leanPath(f.pkg) {
			deps = append(deps, d)
		}
	}
	sort.Strings(deps)
	p.Dependency = deps
	return p
}

// request orders the lean files and the external files they import
// (dependencies first, as protoc does) into one plugin request.
func request(lean map[string]*descriptorpb.FileDescriptorProto, param string) *pluginpb.CodeGeneratorRequest {
	req := &pluginpb.CodeGeneratorRequest{Parameter: proto.String(param)}
	seen := map[string]bool{}
	var visit func(name string)
	visit = func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		p := lean[name]
		if p == nil {
			fd, err := protoregistry.GlobalFiles.FindFileByPath(name)
			if err != nil {
				panic(fmt.Sprintf("leanxds: %s: %v", name, err))
			}
			p = protodesc.ToFileDescriptorProto(fd)
		}
		for _, d := range p.Dependency {
			visit(d)
		}
		req.ProtoFile = append(req.ProtoFile, p)
	}
	names := make([]string, 0, len(lean))
	for n := range lean {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		visit(n)
	}
	req.FileToGenerate = names
	return req
}

func runPlugin(bin string, req *pluginpb.CodeGeneratorRequest, out map[string][]byte) error {
	in, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin)
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %v: %s (run `make tools` to build it)", bin, err, stderr.String())
	}
	var resp pluginpb.CodeGeneratorResponse
	if err := proto.Unmarshal(stdout.Bytes(), &resp); err != nil {
		return fmt.Errorf("%s: %v", bin, err)
	}
	if resp.Error != nil {
		return fmt.Errorf("%s: %s", bin, resp.GetError())
	}
	for _, f := range resp.File {
		out[f.GetName()] = []byte(f.GetContent())
	}
	return nil
}

func compare(want map[string][]byte) error {
	var errs []error
	have := map[string]bool{}
	_ = filepath.WalkDir(outDir+"/envoy", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			have[filepath.ToSlash(p)] = true
		}
		return nil
	})
	for name, b := range want {
		got, err := os.ReadFile(name)
		if err != nil || !bytes.Equal(got, b) {
			errs = append(errs, fmt.Errorf("%s is out of date", name))
		}
		delete(have, name)
	}
	for name := range have {
		errs = append(errs, fmt.Errorf("%s is not generated any more", name))
	}
	if len(errs) > 0 {
		sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
		return fmt.Errorf("%w\nrun `make generate`", errors.Join(errs...))
	}
	return nil
}
