package xdsclient

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/causewaymesh/causeway/proxy/leanxds"
)

// FieldError is one problem with one field of one xDS resource. Every error
// the translators return is a *FieldError or an errors.Join of them, so
// callers can use errors.As to find the resource and field.
type FieldError struct {
	Kind  string // "listener", "route_config", "cluster", "cluster_load_assignment", "secret", "bootstrap"
	Name  string // the resource's name
	Field string // proto field path, e.g. "filter_chains[0].filters[1].typed_config"
	// Problem says what is wrong; empty for an unsupported field.
	Problem string
	// Fix says what to do about it, if there is something to say.
	Fix string
	// Unsupported marks a field outside the subset Causeway implements.
	Unsupported bool
	// Err is the underlying cause (a regexp or x509 error, a proto
	// validation error), if any.
	Err error
}

func (e *FieldError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %q: ", e.Kind, e.Name)
	switch {
	case e.Unsupported:
		b.WriteString("unsupported: ")
		b.WriteString(e.Field)
		if e.Problem != "" {
			b.WriteString(" (")
			b.WriteString(e.Problem)
			b.WriteString(")")
		}
	case e.Field != "":
		b.WriteString(e.Field)
		b.WriteString(": ")
		b.WriteString(e.Problem)
	default:
		b.WriteString(e.Problem)
	}
	if e.Fix != "" {
		b.WriteString("; ")
		b.WriteString(e.Fix)
	}
	return b.String()
}

func (e *FieldError) Unwrap() error { return e.Err }

// collector gathers every problem of one resource. It is not safe for
// concurrent use; each translation owns one.
type collector struct {
	kind, name string
	errs       []error
}

func newCollector(kind, name string) *collector {
	return &collector{kind: kind, name: name}
}

// addf records a problem with field; fix may be empty.
func (c *collector) addf(field, fix, format string, args ...any) {
	c.errs = append(c.errs, &FieldError{Kind: c.kind, Name: c.name, Field: field, Problem: fmt.Sprintf(format, args...), Fix: fix})
}

// wrap records a problem caused by err.
func (c *collector) wrap(field, fix string, err error, format string, args ...any) {
	p := fmt.Sprintf(format, args...)
	if p == "" {
		p = err.Error()
	} else {
		p += ": " + err.Error()
	}
	c.errs = append(c.errs, &FieldError{Kind: c.kind, Name: c.name, Field: field, Problem: p, Fix: fix, Err: err})
}

// unsupported records a field outside the supported subset.
func (c *collector) unsupported(field, note, fix string) {
	c.errs = append(c.errs, &FieldError{Kind: c.kind, Name: c.name, Field: field, Problem: note, Fix: fix, Unsupported: true})
}

func (c *collector) failed() bool { return len(c.errs) > 0 }

func (c *collector) err() error {
	switch len(c.errs) {
	case 0:
		return nil
	case 1:
		return c.errs[0]
	}
	return errors.Join(c.errs...)
}

// validate runs the proto's generated ValidateAll and records its error.
// It reports whether m is valid.
func (c *collector) validate(field string, m interface{ ValidateAll() error }) bool {
	if err := m.ValidateAll(); err != nil {
		c.wrap(field, "fix the resource so that it passes Envoy's own proto validation", err, "invalid")
		return false
	}
	return true
}

// only records every populated field of m that is not in allowed as
// unsupported. Fields listed in allowed are either translated by the
// caller or harmless to ignore (docs/xds.md lists which). Unknown fields
// (from newer protos) are skipped.
func (c *collector) only(path string, m proto.Message, allowed ...string) {
	if m == nil {
		return
	}
	r := m.ProtoReflect()
	if !r.IsValid() {
		return
	}
	r.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		name := string(fd.Name())
		for _, a := range allowed {
			if a == name {
				return true
			}
		}
		c.unsupported(join(path, name), "", "remove it; docs/xds.md lists the supported subset")
		return true
	})
}

// join appends a field name to a path.
func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// idx formats path[i].
func idx(path string, i int) string {
	return fmt.Sprintf("%s[%d]", path, i)
}

// translateAs decodes m as the lean message L (leanxds.As) and translates
// it with f. kind names the resource in the error.
func translateAs[L proto.Message, T any](m proto.Message, kind string, f func(L) (T, error)) (T, error) {
	l, err := leanxds.As[L](m)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("%s: %w; send %s", kind, err, leanxds.EnvoyName(l))
	}
	return f(l)
}
