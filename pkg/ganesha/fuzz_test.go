package ganesha

import (
	"strings"
	"testing"
)

// FuzzRenderExport checks the renderer's contract: an export that passes
// Validate renders to a file that parses back to the same fields, with
// exactly one EXPORT block and no key or block the renderer does not emit
// (exportFromConfig rejects anything else). Inputs that fail Validate are
// never rendered by the manager, so they only have to be rejected.
func FuzzRenderExport(f *testing.F) {
	f.Add(uint16(1), "/srv/a", "/a", "RW", "root_squash", "", "sys", "")
	f.Add(uint16(152), "/srv/with space", "/pv152", "RO", "no_root_squash", "127.0.0.1,10.0.0.0/8", "sys,krb5", "3,4")
	f.Add(uint16(65535), "/a;b", "/x", "RW", "all_squash", "1.2.3.4; } EXPORT {", "sys", "4")
	f.Add(uint16(2), "/a/../etc", "/x\n}", "RW", "root_squash", "*", "none", "3")
	f.Add(uint16(3), "/a\"b", "/#c", "NONE", "root", "@ng,*.example.com,::1,fd00::/8", "", "")
	f.Add(uint16(0), "/", "/", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, id uint16, path, pseudo, access, squash, clients, sec, protos string) {
		e := Export{ID: id, Path: path, Pseudo: pseudo, Access: AccessType(access), Squash: Squash(squash),
			Clients: splitList(clients), SecType: splitList(sec)}
		for _, p := range splitList(protos) {
			switch p {
			case "3":
				e.Protocols = append(e.Protocols, 3)
			case "4":
				e.Protocols = append(e.Protocols, 4)
			default:
				e.Protocols = append(e.Protocols, 99)
			}
		}
		if err := e.Validate(); err != nil {
			return
		}
		data := renderExport(e)
		got, err := exportFromConfig(data)
		if err != nil {
			t.Fatalf("valid %s renders to a file that does not parse back: %v\n%s", e, err, data)
		}
		if !got.Equal(e) {
			t.Fatalf("round trip changed the export: got %s, want %s\n%s", got, e, data)
		}
		root, _ := parseConfig(data)
		if len(root.Blocks) != 1 || strings.Count(string(data), "EXPORT {") != 1 {
			t.Fatalf("more than one EXPORT block:\n%s", data)
		}
		// Every line is ours: a value can never spill onto a line of its own.
		if n := strings.Count(string(data), "\n"); n > 20 {
			t.Fatalf("%d lines rendered:\n%s", n, data)
		}
	})
}

// FuzzParseConfig: the parser must never panic on arbitrary input, and
// whatever it accepts as an export must itself be valid.
func FuzzParseConfig(f *testing.F) {
	f.Add(string(renderExport(Export{ID: 1, Path: "/a", Pseudo: "/b", Clients: []string{"10.0.0.0/8"}})))
	f.Add("EXPORT { Export_Id = 1; }")
	f.Add("%include \"x\"\nA { b = c, \"d\"; }")
	f.Add("# comment\n}{;=,\"")
	f.Fuzz(func(t *testing.T, text string) {
		e, err := exportFromConfig([]byte(text))
		if err != nil {
			return
		}
		if verr := e.Validate(); verr != nil {
			t.Fatalf("parser accepted an invalid export %s: %v", e, verr)
		}
	})
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
