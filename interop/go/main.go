// Command c2sp-interop checks a shoulders log with an independent implementation: Go's
// golang.org/x/mod/sumdb/tlog (tiles, tree hashes, inclusion and consistency proofs) and
// golang.org/x/mod/sumdb/note (signed notes), as packaged by Debian. It shares no code with
// shoulders. It reads the log only through C2SP tlog-tiles (an http(s) prefix such as
// http://host/log/ or a directory written by `shoulders publish`), verifies the checkpoint's
// log signature and, given a witness policy, its C2SP tlog-cosignature/v1 cosignatures, then
// authenticates every tile it reads against the checkpoint's root, checks that every entry in
// the entry bundles hashes to its leaf, and checks proofs produced by the shoulders server.
//
// Exit status 0 when every check passes; 1 with the failing check on stderr otherwise.
package main

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const tileHeight = 8

// maxFetchBytes bounds one fetched file: a full entry bundle is at most 256 × (2 + 65535) bytes.
const maxFetchBytes = 256 * (2 + 65535)

// cosigVerifier verifies C2SP tlog-cosignature/v1 signatures (key type 0x04): the signature is
// an 8-byte big-endian timestamp followed by an Ed25519 signature over
// "cosignature/v1\ntime <T>\n" ‖ the note text.
type cosigVerifier struct {
	name string
	hash uint32
	key  ed25519.PublicKey
}

func (v *cosigVerifier) Name() string    { return v.name }
func (v *cosigVerifier) KeyHash() uint32 { return v.hash }
func (v *cosigVerifier) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	ts := binary.BigEndian.Uint64(sig[:8])
	m := append([]byte(fmt.Sprintf("cosignature/v1\ntime %d\n", ts)), msg...)
	return ed25519.Verify(v.key, m, sig[8:])
}

func newCosigVerifier(vkey string) (*cosigVerifier, error) {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		return nil, fmt.Errorf("witness key %q: want <name>+<id>+<key>", vkey)
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 1+ed25519.PublicKeySize || raw[0] != 0x04 {
		return nil, fmt.Errorf("witness key %q: not a 0x04 Ed25519 key", vkey)
	}
	h := sha256.Sum256(append([]byte(parts[0]+"\n"), raw...))
	id := binary.BigEndian.Uint32(h[:4])
	if fmt.Sprintf("%08x", id) != parts[1] {
		return nil, fmt.Errorf("witness key %q: key id does not match", vkey)
	}
	return &cosigVerifier{name: parts[0], hash: id, key: ed25519.PublicKey(raw[1:])}, nil
}

// policy is the shoulders witness policy file: "witness <vkey> [url]" lines and "quorum <k>".
type policy struct {
	witnesses []*cosigVerifier
	quorum    int
}

func readPolicy(path string) (*policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p := &policy{}
	for _, line := range strings.Split(string(data), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case f[0] == "witness" && len(f) >= 2:
			v, err := newCosigVerifier(f[1])
			if err != nil {
				return nil, err
			}
			p.witnesses = append(p.witnesses, v)
		case f[0] == "quorum" && len(f) == 2:
			if p.quorum, err = strconv.Atoi(f[1]); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("policy line %q not understood", line)
		}
	}
	if p.quorum < 1 || p.quorum > len(p.witnesses) {
		return nil, fmt.Errorf("quorum %d with %d witnesses", p.quorum, len(p.witnesses))
	}
	return p, nil
}

// source reads C2SP paths from an http(s) prefix or a directory.
type source struct {
	prefix  string
	fetches int
}

func (s *source) get(path string) ([]byte, error) {
	s.fetches++
	if strings.HasPrefix(s.prefix, "http://") || strings.HasPrefix(s.prefix, "https://") {
		url := strings.TrimSuffix(s.prefix, "/") + "/" + path
		client := &http.Client{Timeout: 30 * time.Second}
		resp, err := client.Get(url)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxFetchBytes+1))
		if err != nil {
			return nil, err
		}
		if len(data) > maxFetchBytes {
			return nil, fmt.Errorf("GET %s: larger than %d bytes", url, maxFetchBytes)
		}
		return data, nil
	}
	return os.ReadFile(filepath.Join(s.prefix, filepath.FromSlash(path)))
}

// c2spPath maps Go's tile path (tile/8/L/N[.p/W], tile/8/data/N[.p/W]) to C2SP's
// (tile/L/N[.p/W], tile/entries/N[.p/W]): the index encoding is the same, C2SP drops the height.
func c2spPath(t tlog.Tile) string {
	p := strings.TrimPrefix(t.Path(), fmt.Sprintf("tile/%d/", tileHeight))
	if strings.HasPrefix(p, "data/") {
		p = "entries/" + strings.TrimPrefix(p, "data/")
	}
	return "tile/" + p
}

// tileReader implements tlog.TileReader over a source; tlog.TileHashReader authenticates
// every tile it returns against the tree hash before using it, then hands them to SaveTiles,
// which keeps them (as sumdb's client keeps verified tiles) so a whole log is read with about
// one fetch per tile.
type tileReader struct {
	src   *source
	saved map[tlog.Tile][]byte
}

func (r *tileReader) Height() int { return tileHeight }
func (r *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		if data, ok := r.saved[t]; ok {
			out[i] = data
			continue
		}
		data, err := r.src.get(c2spPath(t))
		if err != nil {
			return nil, err
		}
		out[i] = data
	}
	return out, nil
}
func (r *tileReader) SaveTiles(tiles []tlog.Tile, data [][]byte) {
	if len(r.saved) > 4096 {
		r.saved = map[tlog.Tile][]byte{}
	}
	for i, t := range tiles {
		r.saved[t] = data[i]
	}
}

type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
}

func parseCheckpoint(text string) (checkpoint, error) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 {
		return checkpoint{}, errors.New("checkpoint has fewer than three lines")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return checkpoint{}, fmt.Errorf("checkpoint size %q", lines[1])
	}
	root, err := tlog.ParseHash(lines[2])
	if err != nil {
		return checkpoint{}, fmt.Errorf("checkpoint root %q: %v", lines[2], err)
	}
	return checkpoint{origin: lines[0], size: size, root: root}, nil
}

// openCheckpoint verifies the log's signature (and the policy's quorum of cosignatures) with
// sumdb/note and parses the checkpoint body.
func openCheckpoint(msg []byte, logKey string, pol *policy) (checkpoint, int, error) {
	logV, err := note.NewVerifier(logKey)
	if err != nil {
		return checkpoint{}, 0, fmt.Errorf("log key: %v", err)
	}
	known := []note.Verifier{logV}
	if pol != nil {
		for _, w := range pol.witnesses {
			known = append(known, w)
		}
	}
	n, err := note.Open(msg, note.VerifierList(known...))
	if err != nil {
		return checkpoint{}, 0, fmt.Errorf("signed note: %v", err)
	}
	logSigned, cosigned := false, map[string]bool{}
	for _, s := range n.Sigs {
		if s.Name == logV.Name() && s.Hash == logV.KeyHash() {
			logSigned = true
		} else {
			cosigned[s.Name] = true
		}
	}
	if !logSigned {
		return checkpoint{}, 0, errors.New("the log's own signature is missing")
	}
	if pol != nil && len(cosigned) < pol.quorum {
		return checkpoint{}, len(cosigned), fmt.Errorf("%d of the %d cosignatures the policy needs", len(cosigned), pol.quorum)
	}
	cp, err := parseCheckpoint(n.Text)
	if err != nil {
		return checkpoint{}, 0, err
	}
	if cp.origin != logV.Name() {
		return checkpoint{}, 0, fmt.Errorf("origin %q is not the key's name %q", cp.origin, logV.Name())
	}
	return cp, len(cosigned), nil
}

// proofs is what the driver collected from the shoulders server's proof endpoints.
type proofs struct {
	OldCheckpoint string `json:"old_checkpoint"`
	Consistency   *struct {
		OldSize int64    `json:"old_size"`
		NewSize int64    `json:"new_size"`
		Hashes  []string `json:"hashes"`
	} `json:"consistency"`
	Inclusion []struct {
		LeafIndex int64    `json:"leaf_index"`
		TreeSize  int64    `json:"tree_size"`
		Hashes    []string `json:"hashes"`
		RecordB64 string   `json:"record_b64"`
	} `json:"inclusion"`
}

func hashes(list []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(list))
	for i, s := range list {
		h, err := tlog.ParseHash(s)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

func run() error {
	tiles := flag.String("tiles", "", "C2SP tlog-tiles prefix: http(s)://host/log/ or a directory")
	logKey := flag.String("log-key", "", "the log's signed-note verifier key")
	policyPath := flag.String("policy", "", "witness policy file (witness <vkey> [url] / quorum <k>)")
	proofsPath := flag.String("proofs", "", "JSON proofs from the shoulders server to check")
	maxEntries := flag.Int64("max-entries", -1, "check at most this many entries (-1: all)")
	flag.Parse()
	if *tiles == "" || *logKey == "" {
		return errors.New("usage: c2sp-interop -tiles PREFIX -log-key VKEY [-policy FILE] [-proofs FILE]")
	}
	var pol *policy
	if *policyPath != "" {
		p, err := readPolicy(*policyPath)
		if err != nil {
			return fmt.Errorf("policy: %v", err)
		}
		pol = p
	}
	src := &source{prefix: *tiles}
	msg, err := src.get("checkpoint")
	if err != nil {
		return fmt.Errorf("checkpoint: %v", err)
	}
	cp, cosigs, err := openCheckpoint(msg, *logKey, pol)
	if err != nil {
		return fmt.Errorf("checkpoint: %v", err)
	}
	fmt.Printf("ok checkpoint: origin %s, size %d, log signature verified, %d witness cosignatures verified\n", cp.origin, cp.size, cosigs)
	if cp.size == 0 {
		return nil
	}
	hr := tlog.TileHashReader(tlog.Tree{N: cp.size, Hash: cp.root}, &tileReader{src: src, saved: map[tlog.Tile][]byte{}})
	th, err := tlog.TreeHash(cp.size, hr)
	if err != nil {
		return fmt.Errorf("tiles: %v", err)
	}
	if th != cp.root {
		return fmt.Errorf("tiles give root %v, the checkpoint says %v", th, cp.root)
	}
	fmt.Printf("ok tiles: tree hash from hash tiles equals the checkpoint root\n")

	limit := cp.size
	if *maxEntries >= 0 && *maxEntries < limit {
		limit = *maxEntries
	}
	checked := int64(0)
	for n := int64(0); n*256 < limit; n++ {
		w := cp.size - n*256
		if w > 256 {
			w = 256
		}
		bundle := tlog.Tile{H: tileHeight, L: -1, N: n, W: int(w)}
		data, err := src.get(c2spPath(bundle))
		if err != nil {
			return fmt.Errorf("entry bundle: %v", err)
		}
		idx := make([]int64, w)
		for i := range idx {
			idx[i] = tlog.StoredHashIndex(0, n*256+int64(i))
		}
		leaves, err := hr.ReadHashes(idx)
		if err != nil {
			return fmt.Errorf("leaf hashes of bundle %d: %v", n, err)
		}
		rest := data
		for i := int64(0); i < w; i++ {
			if len(rest) < 2 {
				return fmt.Errorf("bundle %d truncated at entry %d", n, i)
			}
			l := int(binary.BigEndian.Uint16(rest[:2]))
			if len(rest) < 2+l {
				return fmt.Errorf("bundle %d truncated at entry %d", n, i)
			}
			if tlog.RecordHash(rest[2:2+l]) != leaves[i] {
				return fmt.Errorf("entry %d does not hash to its leaf", n*256+i)
			}
			rest = rest[2+l:]
			checked++
		}
		if len(rest) != 0 {
			return fmt.Errorf("bundle %d has %d trailing bytes", n, len(rest))
		}
	}
	fmt.Printf("ok entries: %d entries hash to their leaves\n", checked)

	for _, i := range []int64{0, cp.size / 2, cp.size - 1} {
		p, err := tlog.ProveRecord(cp.size, i, hr)
		if err != nil {
			return fmt.Errorf("prove record %d: %v", i, err)
		}
		leaf, err := hr.ReadHashes([]int64{tlog.StoredHashIndex(0, i)})
		if err != nil {
			return err
		}
		if err := tlog.CheckRecord(p, cp.size, cp.root, i, leaf[0]); err != nil {
			return fmt.Errorf("inclusion of %d from tiles: %v", i, err)
		}
	}
	fmt.Printf("ok proofs from tiles: inclusion proofs built by sumdb/tlog verify\n")

	if *proofsPath != "" {
		data, err := os.ReadFile(*proofsPath)
		if err != nil {
			return err
		}
		var ps proofs
		if err := json.Unmarshal(data, &ps); err != nil {
			return fmt.Errorf("proofs: %v", err)
		}
		for _, inc := range ps.Inclusion {
			rec, err := base64.StdEncoding.DecodeString(inc.RecordB64)
			if err != nil {
				return err
			}
			hs, err := hashes(inc.Hashes)
			if err != nil {
				return err
			}
			if inc.TreeSize > cp.size {
				return fmt.Errorf("inclusion proof for size %d beyond the checkpoint", inc.TreeSize)
			}
			root, err := tlog.TreeHash(inc.TreeSize, hr)
			if err != nil {
				return err
			}
			if err := tlog.CheckRecord(hs, inc.TreeSize, root, inc.LeafIndex, tlog.RecordHash(rec)); err != nil {
				return fmt.Errorf("shoulders inclusion proof of %d in %d: %v", inc.LeafIndex, inc.TreeSize, err)
			}
		}
		fmt.Printf("ok shoulders inclusion proofs: %d verified by sumdb/tlog\n", len(ps.Inclusion))
		if c := ps.Consistency; c != nil {
			hs, err := hashes(c.Hashes)
			if err != nil {
				return err
			}
			oldRoot, err := tlog.TreeHash(c.OldSize, hr)
			if err != nil {
				return err
			}
			newRoot, err := tlog.TreeHash(c.NewSize, hr)
			if err != nil {
				return err
			}
			if err := tlog.CheckTree(hs, c.NewSize, newRoot, c.OldSize, oldRoot); err != nil {
				return fmt.Errorf("shoulders consistency proof %d -> %d: %v", c.OldSize, c.NewSize, err)
			}
			fmt.Printf("ok shoulders consistency proof %d -> %d verified by sumdb/tlog\n", c.OldSize, c.NewSize)
		}
		if ps.OldCheckpoint != "" {
			old, _, err := openCheckpoint([]byte(ps.OldCheckpoint), *logKey, nil)
			if err != nil {
				return fmt.Errorf("old checkpoint: %v", err)
			}
			root, err := tlog.TreeHash(old.size, hr)
			if err != nil {
				return err
			}
			if root != old.root {
				return fmt.Errorf("the older checkpoint (size %d) is not a prefix of the current tree", old.size)
			}
			fmt.Printf("ok older checkpoint (size %d) is a prefix of the tree\n", old.size)
		}
	}
	fmt.Printf("all checks passed (%d fetches)\n", src.fetches)
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
}
