package config

// ErrorTestInputs returns the inputs of the configuration error tests, by
// name, for the check/serve agreement test (package config_test).
func ErrorTestInputs() map[string]string {
	out := map[string]string{}
	for _, tc := range errorClassCases() {
		out[tc.name] = tc.src
	}
	return out
}
