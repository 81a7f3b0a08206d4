package hcloudsim

import (
	"crypto/md5"
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

// fingerprintMD5 is the colon-separated MD5 fingerprint Hetzner shows for SSH keys.
func fingerprintMD5(pub ssh.PublicKey) string {
	sum := md5.Sum(pub.Marshal())
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02x", b)
	}
	return strings.Join(parts, ":")
}

func sshKeySchema(k *sshKey) schema.SSHKey {
	return schema.SSHKey{ID: k.ID, Name: k.Name, Fingerprint: k.Fingerprint, PublicKey: k.PublicKey,
		Labels: copyLabels(&k.Labels), Created: k.Created}
}

func (s *Sim) sshKeyLocked(p params) (*sshKey, *apiError) {
	id, e := pathID(p, "id", "ssh_key")
	if e != nil {
		return nil, e
	}
	k, ok := s.st.SSHKeys[id]
	if !ok {
		return nil, notFound("ssh_key", id)
	}
	return k, nil
}

func (s *Sim) listSSHKeys(r *http.Request, _ params) (int, any, *apiError) {
	lq, e := parseListQuery(r, "id", "name")
	if e != nil {
		return 0, nil, e
	}
	fp := lq.q.Get("fingerprint")
	s.mu.Lock()
	defer s.mu.Unlock()
	var items []*sshKey
	for _, k := range s.st.SSHKeys {
		if (lq.name != "" && k.Name != lq.name) || (fp != "" && k.Fingerprint != fp) || !lq.sel.matches(k.Labels) {
			continue
		}
		items = append(items, k)
	}
	sortItems(items, lq.sort, func(k *sshKey, f string) (int64, string, bool) { return numKey(f, k.ID, k.Name) })
	page, meta := paginate(items, lq)
	out := make([]schema.SSHKey, 0, len(page))
	for _, k := range page {
		out = append(out, sshKeySchema(k))
	}
	return 200, listResponse("ssh_keys", out, meta), nil
}

func (s *Sim) getSSHKey(_ *http.Request, p params) (int, any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, e := s.sshKeyLocked(p)
	if e != nil {
		return 0, nil, e
	}
	return 200, schema.SSHKeyGetResponse{SSHKey: sshKeySchema(k)}, nil
}

func (s *Sim) createSSHKey(r *http.Request, _ params) (int, any, *apiError) {
	var req schema.SSHKeyCreateRequest
	if e := decodeBody(r, &req); e != nil {
		return 0, nil, e
	}
	if e := validateFreeName(req.Name); e != nil {
		return 0, nil, e
	}
	if strings.TrimSpace(req.PublicKey) == "" {
		return 0, nil, invalidInput("public_key", "is required")
	}
	pub, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(req.PublicKey))
	if err != nil || strings.TrimSpace(string(rest)) != "" {
		return 0, nil, invalidInput("public_key", "must be one public key in OpenSSH authorized_keys format (e.g. 'ssh-ed25519 AAAA... comment')")
	}
	labels := copyLabels(req.Labels)
	if e := validateLabels(labels); e != nil {
		return 0, nil, e
	}
	fp := fingerprintMD5(pub)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.st.SSHKeys {
		if k.Fingerprint == fp {
			return 0, nil, uniqueness("public_key", "SSH key with the same fingerprint already exists")
		}
		if k.Name == req.Name {
			return 0, nil, uniqueness("name", "SSH key name is already used")
		}
	}
	// The key is stored as sent, comment and trailing newline included: the API returns it
	// verbatim, and clients (Terraform) compare it with what they sent.
	k := &sshKey{ID: s.st.newID(), Name: req.Name, Fingerprint: fp, PublicKey: req.PublicKey,
		Labels: labels, Created: s.clock.Now().UTC()}
	s.st.SSHKeys[k.ID] = k
	s.persistLocked()
	return http.StatusCreated, schema.SSHKeyCreateResponse{SSHKey: sshKeySchema(k)}, nil
}

func (s *Sim) updateSSHKey(r *http.Request, p params) (int, any, *apiError) {
	var req schema.SSHKeyUpdateRequest
	if e := decodeBody(r, &req); e != nil {
		return 0, nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, e := s.sshKeyLocked(p)
	if e != nil {
		return 0, nil, e
	}
	if req.Name != "" && req.Name != k.Name {
		if e := validateFreeName(req.Name); e != nil {
			return 0, nil, e
		}
		for _, o := range s.st.SSHKeys {
			if o.Name == req.Name {
				return 0, nil, uniqueness("name", "SSH key name is already used")
			}
		}
		k.Name = req.Name
	}
	if req.Labels != nil {
		if e := validateLabels(*req.Labels); e != nil {
			return 0, nil, e
		}
		k.Labels = copyLabels(req.Labels)
	}
	s.persistLocked()
	return 200, schema.SSHKeyUpdateResponse{SSHKey: sshKeySchema(k)}, nil
}

func (s *Sim) deleteSSHKey(_ *http.Request, p params) (int, any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, e := s.sshKeyLocked(p)
	if e != nil {
		return 0, nil, e
	}
	delete(s.st.SSHKeys, k.ID)
	s.persistLocked()
	return http.StatusNoContent, nil, nil
}
