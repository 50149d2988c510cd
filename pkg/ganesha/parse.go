package ganesha

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// This is a parser for the subset of ganesha config syntax that we render:
// blocks, "key = v1, v2;" parameters, double-quoted strings without escapes,
// '#' comments and %include lines. It exists to read our own files back
// (List, idempotent Add) and to let the fuzzer check that what we render means
// exactly what the struct said. It is deliberately strict.

type confValue struct {
	Text   string
	Quoted bool
}

type confParam struct {
	Key    string
	Values []confValue
}

type confBlock struct {
	Name     string
	Params   []confParam
	Blocks   []*confBlock
	Includes []string // only at top level
}

type confToken struct {
	kind byte // 'w' word, 's' quoted string, '%' directive, or the punctuation itself
	text string
	line int
}

func lexConfig(data string) ([]confToken, error) {
	var toks []confToken
	line := 1
	for i := 0; i < len(data); {
		c := data[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#':
			for i < len(data) && data[i] != '\n' {
				i++
			}
		case c == '{' || c == '}' || c == ';' || c == '=' || c == ',':
			toks = append(toks, confToken{kind: c, text: string(c), line: line})
			i++
		case c == '"':
			j := strings.IndexAny(data[i+1:], "\"\n")
			if j < 0 || data[i+1+j] != '"' {
				return nil, fmt.Errorf("line %d: unterminated string", line)
			}
			toks = append(toks, confToken{kind: 's', text: data[i+1 : i+1+j], line: line})
			i += j + 2
		case c == '%':
			j := i + 1
			for j < len(data) && isWordByte(data[j]) {
				j++
			}
			toks = append(toks, confToken{kind: '%', text: data[i:j], line: line})
			i = j
		case isWordByte(c):
			j := i
			for j < len(data) && isWordByte(data[j]) {
				j++
			}
			toks = append(toks, confToken{kind: 'w', text: data[i:j], line: line})
			i = j
		default:
			return nil, fmt.Errorf("line %d: unexpected character %q", line, c)
		}
	}
	return toks, nil
}

func isWordByte(c byte) bool {
	return c > ' ' && c != 0x7f && !strings.ContainsRune("{};=,\"#%'\\", rune(c))
}

// parseConfig parses a whole file into an unnamed top-level block.
func parseConfig(data []byte) (*confBlock, error) {
	toks, err := lexConfig(string(data))
	if err != nil {
		return nil, err
	}
	p := &confParser{toks: toks}
	root := &confBlock{}
	if err := p.body(root, true); err != nil {
		return nil, err
	}
	return root, nil
}

type confParser struct {
	toks []confToken
	pos  int
}

func (p *confParser) peek(k int) *confToken {
	if p.pos+k < len(p.toks) {
		return &p.toks[p.pos+k]
	}
	return nil
}

func (p *confParser) errf(format string, args ...any) error {
	line := 0
	if t := p.peek(0); t != nil {
		line = t.line
	} else if len(p.toks) > 0 {
		line = p.toks[len(p.toks)-1].line
	}
	return fmt.Errorf("line %d: %s", line, fmt.Sprintf(format, args...))
}

func (p *confParser) body(b *confBlock, top bool) error {
	for {
		t := p.peek(0)
		if t == nil {
			if top {
				return nil
			}
			return p.errf("block %s not closed", b.Name)
		}
		switch {
		case t.kind == '}':
			if top {
				return p.errf("unexpected }")
			}
			p.pos++
			return nil
		case t.kind == '%':
			if !top || t.text != "%include" {
				return p.errf("unexpected directive %s", t.text)
			}
			arg := p.peek(1)
			if arg == nil || arg.kind != 's' {
				return p.errf("%%include wants a quoted file name")
			}
			b.Includes = append(b.Includes, arg.text)
			p.pos += 2
		case t.kind == 'w':
			next := p.peek(1)
			if next == nil {
				return p.errf("%s: unexpected end", t.text)
			}
			switch next.kind {
			case '{':
				p.pos += 2
				child := &confBlock{Name: t.text}
				if err := p.body(child, false); err != nil {
					return err
				}
				b.Blocks = append(b.Blocks, child)
			case '=':
				if top {
					return p.errf("parameter %s outside a block", t.text)
				}
				p.pos += 2
				param := confParam{Key: t.text}
				if err := p.values(&param); err != nil {
					return err
				}
				b.Params = append(b.Params, param)
			default:
				return p.errf("%s: want { or =", t.text)
			}
		default:
			return p.errf("unexpected %q", t.text)
		}
	}
}

func (p *confParser) values(param *confParam) error {
	for {
		t := p.peek(0)
		if t == nil || (t.kind != 'w' && t.kind != 's') {
			return p.errf("%s: want a value", param.Key)
		}
		param.Values = append(param.Values, confValue{Text: t.text, Quoted: t.kind == 's'})
		sep := p.peek(1)
		p.pos += 2
		switch {
		case sep == nil:
			return p.errf("%s: missing ;", param.Key)
		case sep.kind == ';':
			return nil
		case sep.kind == ',':
		default:
			return p.errf("%s: want , or ; after a value", param.Key)
		}
	}
}

// exportFromConfig reads back an export file that renderExport wrote. Any
// key, block or directive that renderExport does not produce is an error.
func exportFromConfig(data []byte) (Export, error) {
	root, err := parseConfig(data)
	if err != nil {
		return Export{}, err
	}
	if len(root.Includes) > 0 || len(root.Blocks) != 1 || root.Blocks[0].Name != "EXPORT" {
		return Export{}, errors.New("want exactly one EXPORT block and nothing else")
	}
	blk := root.Blocks[0]
	var e Export
	seen := map[string]bool{}
	var topAccess string
	var fsid string
	for _, prm := range blk.Params {
		if seen[prm.Key] {
			return Export{}, fmt.Errorf("%s given twice", prm.Key)
		}
		seen[prm.Key] = true
		switch prm.Key {
		case "Export_Id":
			v, err := oneBare(prm)
			if err != nil {
				return Export{}, err
			}
			id, err := strconv.ParseUint(v, 10, 16)
			if err != nil || id == 0 {
				return Export{}, fmt.Errorf("Export_Id %q: want 1..65535", v)
			}
			e.ID = uint16(id)
		case "Path", "Pseudo":
			if len(prm.Values) != 1 || !prm.Values[0].Quoted {
				return Export{}, fmt.Errorf("%s: want one quoted value", prm.Key)
			}
			if prm.Key == "Path" {
				e.Path = prm.Values[0].Text
			} else {
				e.Pseudo = prm.Values[0].Text
			}
		case "Filesystem_Id":
			if fsid, err = oneBare(prm); err != nil {
				return Export{}, err
			}
		case "Access_Type":
			if topAccess, err = oneBare(prm); err != nil {
				return Export{}, err
			}
		case "Squash":
			v, err := oneBare(prm)
			if err != nil {
				return Export{}, err
			}
			e.Squash = Squash(v)
		case "SecType":
			if e.SecType, err = bareList(prm); err != nil {
				return Export{}, err
			}
		case "Protocols":
			l, err := bareList(prm)
			if err != nil {
				return Export{}, err
			}
			for _, s := range l {
				n, err := strconv.Atoi(s)
				if err != nil {
					return Export{}, fmt.Errorf("Protocols %q: %w", s, err)
				}
				e.Protocols = append(e.Protocols, n)
			}
		default:
			return Export{}, fmt.Errorf("unexpected parameter %s", prm.Key)
		}
	}
	for _, k := range []string{"Export_Id", "Path", "Pseudo", "Filesystem_Id", "Access_Type", "Squash", "SecType"} {
		if !seen[k] {
			return Export{}, fmt.Errorf("missing %s", k)
		}
	}
	if fsid != e.FilesystemID() {
		return Export{}, fmt.Errorf("Filesystem_Id %s: want %s", fsid, e.FilesystemID())
	}
	var haveFSAL, haveClient bool
	for _, sub := range blk.Blocks {
		switch sub.Name {
		case "FSAL":
			if haveFSAL {
				return Export{}, errors.New("two FSAL blocks")
			}
			if e.FSAL, err = fsalFromConfig(sub); err != nil {
				return Export{}, err
			}
			haveFSAL = true
		case "CLIENT":
			if haveClient || len(sub.Blocks) > 0 {
				return Export{}, errors.New("want at most one flat CLIENT block")
			}
			haveClient = true
			if err := clientFromConfig(sub, &e); err != nil {
				return Export{}, err
			}
		default:
			return Export{}, fmt.Errorf("unexpected block %s", sub.Name)
		}
	}
	if !haveFSAL {
		return Export{}, errors.New("missing FSAL block")
	}
	if haveClient {
		if topAccess != "None" {
			return Export{}, fmt.Errorf("Access_Type %s outside CLIENT: want None", topAccess)
		}
	} else {
		e.Access = AccessType(topAccess)
	}
	if err := e.Validate(); err != nil {
		return Export{}, err
	}
	return e, nil
}

// fsalFromConfig reads the FSAL block renderFSAL writes: Name = VFS alone,
// or Name = CEPH with Filesystem, User_Id and Secret_Access_Key, quoted.
func fsalFromConfig(b *confBlock) (FSAL, error) {
	if len(b.Blocks) > 0 || len(b.Params) == 0 || b.Params[0].Key != "Name" {
		return FSAL{}, errors.New("FSAL block: want Name first and no sub-blocks")
	}
	name, err := oneBare(b.Params[0])
	if err != nil {
		return FSAL{}, fmt.Errorf("FSAL block: %w", err)
	}
	switch name {
	case FSALVFS:
		if len(b.Params) != 1 {
			return FSAL{}, errors.New("FSAL block: want only Name = VFS")
		}
		return FSAL{Name: FSALVFS}, nil
	case FSALCeph:
	default:
		return FSAL{}, fmt.Errorf("FSAL block: Name %s: want VFS or CEPH", name)
	}
	f := FSAL{Name: FSALCeph}
	fields := map[string]*string{"Filesystem": &f.Filesystem, "User_Id": &f.UserID, "Secret_Access_Key": &f.Secret}
	for _, prm := range b.Params[1:] {
		dst, ok := fields[prm.Key]
		if !ok {
			return FSAL{}, fmt.Errorf("FSAL block: unexpected parameter %s", prm.Key)
		}
		if *dst != "" {
			return FSAL{}, fmt.Errorf("FSAL block: %s given twice", prm.Key)
		}
		if len(prm.Values) != 1 || !prm.Values[0].Quoted || prm.Values[0].Text == "" {
			return FSAL{}, fmt.Errorf("FSAL block: %s: want one quoted value", prm.Key)
		}
		*dst = prm.Values[0].Text
	}
	if f.Filesystem == "" || f.UserID == "" || f.Secret == "" {
		return FSAL{}, errors.New("FSAL block: CEPH wants Filesystem, User_Id and Secret_Access_Key")
	}
	return f, nil
}

func clientFromConfig(b *confBlock, e *Export) error {
	seen := map[string]bool{}
	for _, prm := range b.Params {
		if seen[prm.Key] {
			return fmt.Errorf("CLIENT: %s given twice", prm.Key)
		}
		seen[prm.Key] = true
		switch prm.Key {
		case "Clients":
			l, err := bareList(prm)
			if err != nil {
				return err
			}
			e.Clients = l
		case "Access_Type":
			v, err := oneBare(prm)
			if err != nil {
				return err
			}
			e.Access = AccessType(v)
		case "Squash":
			v, err := oneBare(prm)
			if err != nil {
				return err
			}
			if Squash(v) != e.Squash {
				return fmt.Errorf("CLIENT Squash %s differs from the export's %s", v, e.Squash)
			}
		default:
			return fmt.Errorf("CLIENT: unexpected parameter %s", prm.Key)
		}
	}
	if !seen["Clients"] || !seen["Access_Type"] || !seen["Squash"] {
		return errors.New("CLIENT: want Clients, Access_Type and Squash")
	}
	return nil
}

func oneBare(p confParam) (string, error) {
	if len(p.Values) != 1 || p.Values[0].Quoted {
		return "", fmt.Errorf("%s: want one unquoted value", p.Key)
	}
	return p.Values[0].Text, nil
}

func bareList(p confParam) ([]string, error) {
	out := make([]string, 0, len(p.Values))
	for _, v := range p.Values {
		if v.Quoted {
			return nil, fmt.Errorf("%s: want unquoted values", p.Key)
		}
		out = append(out, v.Text)
	}
	return out, nil
}
