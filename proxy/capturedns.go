package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/causewaymesh/causeway/proxy/config"
)

// dnsTable maps lower-case fully qualified names ("cart.shop.svc.clusterset.local.")
// to their VIPs. It is immutable once built.
type dnsTable map[string][]netip.Addr

// dnsTTL is the TTL of answers: short, since a VIP may move with the
// configuration.
const dnsTTL = 30

// buildDNSTable reads names from the route configurations: a virtual host
// whose domains hold both IP literals (the service's VIPs, which the
// control plane lists so that requests addressed to the VIP match) and
// names under clusterset.local answers those names with those IPs. No
// other xDS resource is needed: the name and its VIP already meet in the
// virtual host that routes them.
func buildDNSTable(s *config.Snapshot) dnsTable {
	t := dnsTable{}
	add := func(rc *config.RouteConfig) {
		if rc == nil {
			return
		}
		for _, vh := range rc.VirtualHosts {
			var ips []netip.Addr
			var names []string
			for _, d := range vh.Domains {
				host := d
				if h, _, err := net.SplitHostPort(d); err == nil {
					host = h
				}
				if ip, err := netip.ParseAddr(host); err == nil {
					ips = append(ips, ip.Unmap())
					continue
				}
				host = strings.ToLower(host)
				if !strings.Contains(host, "*") && isClustersetName(host) {
					names = append(names, strings.TrimSuffix(host, ".")+".")
				}
			}
			for _, n := range names {
				for _, ip := range ips {
					if !slices.Contains(t[n], ip) {
						t[n] = append(t[n], ip)
					}
				}
			}
		}
	}
	for _, rc := range s.Routes {
		add(rc)
	}
	for _, l := range s.Listeners {
		if l.HTTP != nil {
			add(l.HTTP.Routes)
		}
	}
	for _, ips := range t {
		slices.SortFunc(ips, netip.Addr.Compare)
	}
	return t
}

// dnsServer answers clusterset.local from the table and forwards the
// rest, over UDP and TCP on one address.
type dnsServer struct {
	udp      net.PacketConn
	tcp      net.Listener
	upstream string
	names    func() dnsTable
	log      *slog.Logger
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
}

func startDNS(addr, upstream string, names func() dnsTable, log *slog.Logger) (*dnsServer, error) {
	udp, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("capture: DNS socket udp %s: %w; it must match causeway-init --dns-port and be free", addr, err)
	}
	tcp, err := net.Listen("tcp", udp.LocalAddr().String())
	if err != nil {
		udp.Close()
		return nil, fmt.Errorf("capture: DNS socket tcp %s: %w; it must match causeway-init --dns-port and be free", addr, err)
	}
	d := &dnsServer{udp: udp, tcp: tcp, upstream: upstream, names: names, log: log, conns: map[net.Conn]struct{}{}}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.wg.Go(d.serveUDP)
	d.wg.Go(d.serveTCP)
	return d, nil
}

func (d *dnsServer) close() {
	d.cancel()
	d.udp.Close()
	d.tcp.Close()
	d.mu.Lock()
	for c := range d.conns {
		c.Close()
	}
	d.mu.Unlock()
	d.wg.Wait()
}

func (d *dnsServer) serveUDP() {
	buf := make([]byte, 4096)
	for {
		n, from, err := d.udp.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		q := buf[:n]
		resp, forward := d.answer(q)
		if !forward {
			if resp != nil {
				_, _ = d.udp.WriteTo(resp, from)
			}
			continue
		}
		q = slices.Clone(q)
		d.wg.Go(func() {
			if resp := d.forward(q, "udp"); resp != nil {
				_, _ = d.udp.WriteTo(resp, from)
			}
		})
	}
}

func (d *dnsServer) serveTCP() {
	for {
		c, err := d.tcp.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		d.mu.Lock()
		if d.ctx.Err() != nil {
			d.mu.Unlock()
			c.Close()
			return
		}
		d.conns[c] = struct{}{}
		d.mu.Unlock()
		d.wg.Go(func() {
			defer func() {
				d.mu.Lock()
				delete(d.conns, c)
				d.mu.Unlock()
				c.Close()
			}()
			for {
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				q, err := readTCPMsg(c)
				if err != nil {
					return
				}
				resp, forward := d.answer(q)
				if forward {
					resp = d.forward(q, "tcp")
				}
				if resp == nil {
					return
				}
				if err := writeTCPMsg(c, resp); err != nil {
					return
				}
			}
		})
	}
}

func readTCPMsg(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(l[:]))
	_, err := io.ReadFull(r, b)
	return b, err
}

func writeTCPMsg(w io.Writer, m []byte) error {
	b := make([]byte, 2+len(m))
	binary.BigEndian.PutUint16(b, uint16(len(m)))
	copy(b[2:], m)
	_, err := w.Write(b)
	return err
}

// answer answers a query under clusterset.local. forward is true for
// every other name; resp is nil for input that is not a query (dropped).
func (d *dnsServer) answer(q []byte) (resp []byte, forward bool) {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil || h.Response {
		return nil, false
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		return reply(h, qs, dnsmessage.RCodeFormatError, nil), false
	}
	name := strings.ToLower(qs[0].Name.String())
	if !isClustersetName(name) {
		return nil, true
	}
	ips, ok := d.names()[name]
	if !ok {
		return reply(h, qs, dnsmessage.RCodeNameError, nil), false
	}
	return reply(h, qs, dnsmessage.RCodeSuccess, ips), false
}

// reply builds an authoritative answer: the A (or AAAA) records of ips
// that match the question's type; other types get no records (NODATA).
func reply(h dnsmessage.Header, qs []dnsmessage.Question, rcode dnsmessage.RCode, ips []netip.Addr) []byte {
	rh := dnsmessage.Header{ID: h.ID, Response: true, OpCode: h.OpCode, Authoritative: rcode != dnsmessage.RCodeServerFailure,
		RecursionDesired: h.RecursionDesired, RecursionAvailable: true, RCode: rcode}
	b := dnsmessage.NewBuilder(make([]byte, 0, 128), rh)
	b.EnableCompression()
	_ = b.StartQuestions()
	for _, q := range qs {
		_ = b.Question(q)
	}
	_ = b.StartAnswers()
	if len(qs) == 1 {
		q := qs[0]
		rr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: dnsTTL}
		for _, ip := range ips {
			switch {
			case ip.Is4() && (q.Type == dnsmessage.TypeA || q.Type == dnsmessage.TypeALL):
				_ = b.AResource(rr, dnsmessage.AResource{A: ip.As4()})
			case ip.Is6() && (q.Type == dnsmessage.TypeAAAA || q.Type == dnsmessage.TypeALL):
				_ = b.AAAAResource(rr, dnsmessage.AAAAResource{AAAA: ip.As16()})
			}
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// forward sends q to the upstream resolver and returns its answer, or
// SERVFAIL when there is none or it fails.
func (d *dnsServer) forward(q []byte, network string) []byte {
	fail := func() []byte {
		var p dnsmessage.Parser
		h, err := p.Start(q)
		if err != nil {
			return nil
		}
		qs, _ := p.AllQuestions()
		return reply(h, qs, dnsmessage.RCodeServerFailure, nil)
	}
	if d.upstream == "" {
		return fail()
	}
	ctx, cancel := context.WithTimeout(d.ctx, 3*time.Second)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, network, d.upstream)
	if err != nil {
		d.log.Debug("DNS forward failed", "upstream", d.upstream, "err", err)
		return fail()
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if network == "tcp" {
		if err := writeTCPMsg(c, q); err != nil {
			return fail()
		}
		resp, err := readTCPMsg(c)
		if err != nil {
			return fail()
		}
		return resp
	}
	if _, err := c.Write(q); err != nil {
		return fail()
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		d.log.Debug("DNS forward failed", "upstream", d.upstream, "err", err)
		return fail()
	}
	return buf[:n]
}
