package ganesha

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// forbiddenInQuoted are the characters that could end a quoted ganesha value
// or open a block, statement or comment. We reject rather than escape: the
// ganesha lexer's escaping rules are not documented, and PV directories never
// need these characters.
const forbiddenInQuoted = ";{}\"#'\\"

// validateDir checks an absolute path that is rendered as a quoted string
// (Path, Pseudo).
func validateDir(field, p string) error {
	if p == "" {
		return fmt.Errorf("%s is empty", field)
	}
	if len(p) > 1024 {
		return fmt.Errorf("%s is longer than 1024 bytes", field)
	}
	if err := checkChars(field, p); err != nil {
		return err
	}
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%s %q is not absolute", field, p)
	}
	for _, c := range strings.Split(p, "/") {
		if c == ".." {
			return fmt.Errorf("%s %q has a .. component", field, p)
		}
	}
	if path.Clean(p) != p {
		return fmt.Errorf("%s %q is not clean (want %q)", field, p, path.Clean(p))
	}
	return nil
}

func checkChars(field, s string) error {
	for i, r := range s {
		switch {
		case r == 0:
			return fmt.Errorf("%s %q has a NUL byte at %d", field, s, i)
		case r == '\n' || r == '\r':
			return fmt.Errorf("%s %q has a newline at %d", field, s, i)
		case r < 0x20 || r == 0x7f:
			return fmt.Errorf("%s %q has control character %U at %d", field, s, r, i)
		case r == utf8.RuneError:
			return fmt.Errorf("%s %q is not valid UTF-8 at %d", field, s, i)
		case !unicode.IsPrint(r):
			return fmt.Errorf("%s %q has unprintable character %U at %d", field, s, r, i)
		case strings.ContainsRune(forbiddenInQuoted, r):
			return fmt.Errorf("%s %q has forbidden character %q at %d", field, s, r, i)
		}
	}
	return nil
}

// validateClient accepts what ganesha's Clients list understands and what is
// safe as an unquoted token (ganesha refuses quoted clients): an IP address,
// a CIDR network, a host name or wildcard pattern, or @netgroup.
func validateClient(c string) error {
	if c == "" {
		return fmt.Errorf("client is empty")
	}
	if err := checkChars("client", c); err != nil {
		return err
	}
	if c == "*" {
		return fmt.Errorf(`client "*" must be the only entry (it means everyone)`)
	}
	if len(c) > 255 {
		return fmt.Errorf("client %q is longer than 255 bytes", c)
	}
	if _, err := netip.ParseAddr(c); err == nil {
		return nil
	}
	if strings.Contains(c, "/") {
		pfx, err := netip.ParsePrefix(c)
		if err != nil {
			return fmt.Errorf("client %q: %w", c, err)
		}
		if pfx.Masked() != pfx {
			return fmt.Errorf("client %q has host bits set (want %s)", c, pfx.Masked())
		}
		return nil
	}
	name := strings.TrimPrefix(c, "@")
	if name == "" {
		return fmt.Errorf("client %q: empty netgroup", c)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '.' || r == '-' || r == '_' || r == '*' || r == '?'
		if !ok {
			return fmt.Errorf("client %q: character %q at %d is not allowed in a host name, pattern or netgroup", c, r, i)
		}
	}
	return nil
}

var knownSecTypes = []string{"none", "sys", "krb5", "krb5i", "krb5p"}

func validateSecTypes(s []string) error {
	for i, t := range s {
		if !slices.Contains(knownSecTypes, t) {
			return fmt.Errorf("sectype %q: want one of %s", t, strings.Join(knownSecTypes, ", "))
		}
		if slices.Contains(s[:i], t) {
			return fmt.Errorf("sectype %q listed twice", t)
		}
	}
	return nil
}

func validateProtocols(p []int) error {
	for i, v := range p {
		if v != 3 && v != 4 {
			return fmt.Errorf("protocol %d: want 3 or 4", v)
		}
		if slices.Contains(p[:i], v) {
			return fmt.Errorf("protocol %d listed twice", v)
		}
	}
	return nil
}

// validateFSAL checks an export's FSAL. CEPH values are rendered quoted; they
// are held to the characters Ceph itself allows (names: [A-Za-z0-9._-];
// keys: base64), so nothing in them can end a value or open a block.
func validateFSAL(f FSAL) error {
	switch f.Name {
	case "", FSALVFS:
		if f.UserID != "" || f.Secret != "" || f.Filesystem != "" {
			return errors.New("FSAL VFS takes no user, secret or filesystem")
		}
		return nil
	case FSALCeph:
	default:
		return fmt.Errorf("FSAL %q: want %s or %s", f.Name, FSALVFS, FSALCeph)
	}
	var errs []error
	if err := checkToken("CEPH user", f.UserID, 1024, isNameByte); err != nil {
		errs = append(errs, err)
	}
	if err := checkToken("CEPH filesystem", f.Filesystem, 255, isNameByte); err != nil {
		errs = append(errs, err)
	}
	// The key is never quoted into an error: only where it is wrong.
	if err := checkToken("CEPH secret", f.Secret, 1024, isBase64Byte); err != nil {
		errs = append(errs, errors.New("CEPH secret is empty, too long, or not base64"))
	}
	return errors.Join(errs...)
}

func checkToken(field, s string, maxLen int, ok func(byte) bool) error {
	if s == "" || len(s) > maxLen {
		return fmt.Errorf("%s is empty or longer than %d bytes", field, maxLen)
	}
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return fmt.Errorf("%s %q: character %q at %d is not allowed", field, s, s[i], i)
		}
	}
	return nil
}

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_'
}

func isBase64Byte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '='
}
