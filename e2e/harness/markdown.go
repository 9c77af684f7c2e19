package harness

import (
	"errors"
	"os"
	"strings"
)

// ReplaceSection swaps the section of the markdown file at path that
// starts with the heading title (up to the next "## " heading) for
// section, or appends section: the benchmarks keep their latest table in
// docs/benchmarks.md.
func ReplaceSection(path, title, section string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	text := string(old)
	if text == "" {
		text = "# Benchmarks\n\n"
	}
	if i := strings.Index(text, title); i >= 0 {
		rest := text[i+len(title):]
		end := len(text)
		if j := strings.Index(rest, "\n## "); j >= 0 {
			end = i + len(title) + j + 1
		}
		text = text[:i] + section + text[end:]
	} else {
		if !strings.HasSuffix(text, "\n\n") {
			text = strings.TrimRight(text, "\n") + "\n\n"
		}
		text += section
	}
	return os.WriteFile(path, []byte(text), 0o644)
}
