package check

import (
	"fmt"
	"os"
	"strings"
)

// Instruction is one Dockerfile instruction with its line continuations
// joined.
type Instruction struct {
	Line int
	Cmd  string // upper case: FROM, ARG, COPY, ...
	Args []string
}

// ParseDockerfile splits a Dockerfile into instructions. It is no
// replacement for BuildKit's parser, only enough to read FROM, ARG and COPY
// (no heredocs: the Dockerfiles here have none, and a heredoc would show up
// as an unknown instruction).
func ParseDockerfile(path string) ([]Instruction, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []Instruction
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(string(data), "\n") {
		t := strings.TrimSpace(line)
		if cur.Len() == 0 && (t == "" || strings.HasPrefix(t, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if body, cont := strings.CutSuffix(t, "\\"); cont {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(t)
		f := strings.Fields(cur.String())
		cur.Reset()
		cmd := strings.ToUpper(f[0])
		switch cmd {
		case "FROM", "ARG", "RUN", "COPY", "ADD", "ENV", "WORKDIR", "LABEL", "USER", "EXPOSE", "CMD", "ENTRYPOINT":
		default:
			return nil, fmt.Errorf("%s:%d: unexpected instruction %q", path, start, f[0])
		}
		out = append(out, Instruction{Line: start, Cmd: cmd, Args: f[1:]})
	}
	if cur.Len() > 0 {
		return nil, fmt.Errorf("%s: ends in a line continuation", path)
	}
	return out, nil
}

// GlobalArgs are the ARG defaults declared before the first FROM, which
// FROM lines may use.
func GlobalArgs(ins []Instruction) map[string]string {
	args := map[string]string{}
	for _, in := range ins {
		if in.Cmd == "FROM" {
			break
		}
		if in.Cmd == "ARG" {
			for _, a := range in.Args {
				k, v, _ := strings.Cut(a, "=")
				args[k] = v
			}
		}
	}
	return args
}

// Expand replaces ${NAME} and $NAME with args[NAME].
func Expand(s string, args map[string]string) string {
	return os.Expand(s, func(k string) string { return args[k] })
}
