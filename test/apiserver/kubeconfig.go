package main

import (
	"encoding/base64"
	"fmt"
	"os"
)

func writeKubeconfig(path, server string, p *pki) error {
	b64 := base64.StdEncoding.EncodeToString
	text := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: sluice-test
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: sluice-admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: sluice-test
  context:
    cluster: sluice-test
    user: sluice-admin
    namespace: default
current-context: sluice-test
`, server, b64(p.caCert), b64(p.adminCert), b64(p.adminKey))
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		return err
	}
	// Readers polling for the file never see it half-written.
	return os.Rename(tmp, path)
}
