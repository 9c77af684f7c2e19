// Package config is the Inflow filter configuration: the one schema that the
// control plane writes and the filter reads. It has no Envoy or Kubernetes
// imports so both sides share it; it is validated in one place (Validate),
// and every default and limit is in defaults.go.
//
// # Versions and rolling upgrades
//
// Control planes and Envoys are upgraded at different times, so a filter
// meets configs written for other schema versions. A config carries
// "version", the SchemaVersion of its writer (absent means 1), and:
//
//   - A config of the filter's version or older is read strictly. The filter
//     knows every field of every version up to its own, so an unknown field
//     is a mistake: the config is refused, naming the field, and Envoy keeps
//     serving the previous one. Fields added after the config's version are
//     absent and take their zero value, which by rule means the older
//     behaviour.
//   - A config of a newer version is read leniently: fields this filter does
//     not know are ignored and listed by Config.Ignored (the filter logs
//     them as a warning with both versions); everything else is read and
//     validated as usual, and an error says both versions.
//
// So either side may be upgraded first. What makes this safe is one rule for
// new fields: optional, zero value = the old behaviour, and safe to ignore
// (a filter that does not know the field still serves requests correctly,
// if perhaps less well). A change that cannot follow it (a field whose
// meaning changes, a new required field, a changed default) is a new schema,
// not a new version: a new TypeURL (inflow.v2.FilterConfig), which old
// filters refuse by name.
//
// # Adding a field
//
//  1. Add it with omitempty (or omitzero), its zero value meaning "as
//     before", and tag it with the version that adds it:
//     `json:"name,omitempty" since:"N"`, where N is SchemaVersion+1.
//  2. Set SchemaVersion (version.go) to N, validate the field in Validate,
//     and put any default in defaults.go.
//  3. Set the field in compatReference (compat_test.go) and run
//     `make update-goldens`: it writes testdata/compat/vN.json, which you
//     commit. The compat tests then check that this filter reads every older
//     testdata/compat/v*.json strictly, and that filters of every older
//     version read vN.json ignoring exactly the fields newer than them.
//  4. Document it in the README's filter configuration section.
package config
