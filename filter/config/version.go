package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// SchemaVersion is the filter-config schema version this code reads and
// writes. It counts compatible additions (new optional fields); an
// incompatible change is a new TypeURL instead. How to add a field is in
// the package doc. Version 2 added pools[].destination; version 3 the
// response path: costs, models[].costs, usage, genai_metrics and
// pools[].scheduler.{weights.latency,feedback}; version 4
// pools[].objectives; version 5 models[].backend_refs; version 6
// shared_state and pools[].scheduler.weights.placement.
const SchemaVersion = 6

// sinceTag marks a field added after version 1 with the version that added
// it (`since:"2"`), so tests can read a config as an older filter would.
const sinceTag = "since"

// versionOf reads the "version" member of a config object: the schema
// version of whoever wrote it. Configs written before versioning have none
// and are version 1.
func versionOf(doc map[string]any) (int, error) {
	raw, ok := doc["version"]
	if !ok {
		return 1, nil
	}
	n, ok := raw.(json.Number)
	v, err := strconv.Atoi(string(n))
	if !ok || err != nil || v < 1 {
		return 0, FieldErrorf("version", "must be a whole number >= 1, got %v", raw)
	}
	return v, nil
}

// unknownFields deletes from v, a decoded JSON value of Go type t, every
// object member that a filter of schema version reader does not know, and
// returns their paths ("pools[0].scheduler.speed"). Keys match field names
// exactly: a config's keys are case-sensitive.
func unknownFields(v any, t reflect.Type, reader int, path string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var unknown []string
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return nil // a type error, which decoding reports
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			f, ok := fieldNamed(t, k, reader)
			if !ok {
				unknown = append(unknown, joinPath(path, k))
				delete(obj, k)
				continue
			}
			unknown = append(unknown, unknownFields(obj[k], f.Type, reader, joinPath(path, k))...)
		}
	case reflect.Slice:
		arr, _ := v.([]any)
		for i, e := range arr {
			unknown = append(unknown, unknownFields(e, t.Elem(), reader, fmt.Sprintf("%s[%d]", path, i))...)
		}
	case reflect.Map:
		obj, _ := v.(map[string]any)
		for k, e := range obj {
			unknown = append(unknown, unknownFields(e, t.Elem(), reader, joinPath(path, k))...)
		}
	}
	return unknown
}

// fieldNamed finds the field of struct t whose JSON name is name, among the
// fields a reader of that schema version knows.
func fieldNamed(t reflect.Type, name string, reader int) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || tag != name {
			continue
		}
		if since, err := strconv.Atoi(f.Tag.Get(sinceTag)); err == nil && since > reader {
			return f, false
		}
		return f, true
	}
	return reflect.StructField{}, false
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// unknownFieldsError refuses fields a config of this filter's own version
// (or older) should not have: in a version the filter knows, an unknown
// field is a typo or a bug, and ignoring it would serve the wrong config.
func unknownFieldsError(unknown []string, version, reader int) error {
	errs := make([]error, len(unknown))
	for i, p := range unknown {
		_, key := splitLast(p)
		errs[i] = FieldErrorf(p, "unknown field %q", key)
	}
	return fmt.Errorf("config: %w (the config is schema version %d; this filter reads versions up to %d and refuses unknown fields in those)",
		errors.Join(errs...), version, reader)
}

func splitLast(path string) (parent, key string) {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[:i], path[i+1:]
	}
	return "", path
}
