package host

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/dockbridge/dockbridge/cloudinit"
)

// KeyPair is an SSH key pair in OpenSSH text form.
type KeyPair struct {
	Private []byte     // "-----BEGIN OPENSSH PRIVATE KEY-----" ..., unencrypted
	Public  string     // authorized_keys form without newline
	Signer  ssh.Signer // for golang.org/x/crypto/ssh
}

// GenerateEd25519 makes a fresh ed25519 key pair.
func GenerateEd25519(comment string) (*KeyPair, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, fmt.Errorf("encode ed25519 key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("ed25519 signer: %w", err)
	}
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	if comment != "" {
		pub += " " + comment
	}
	return &KeyPair{Private: pem.EncodeToMemory(block), Public: pub, Signer: signer}, nil
}

// LoadOrCreateKey reads the private key at path, or creates an ed25519 pair there
// (path 0600, path+".pub" 0644) when create is true and it does not exist.
func LoadOrCreateKey(path, comment string, create bool) (kp *KeyPair, created bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		kp, err := GenerateEd25519(comment)
		if err != nil {
			return nil, false, err
		}
		if err := writePrivate(path, kp.Private); err != nil {
			return nil, false, err
		}
		if err := os.WriteFile(path+".pub", []byte(kp.Public+"\n"), 0o644); err != nil {
			return nil, false, fmt.Errorf("write %s.pub: %w", path, err)
		}
		return kp, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read SSH key %s: %w", path, err)
	}
	if fi, err := os.Stat(path); err == nil {
		if err := checkKeyMode(runtime.GOOS, path, fi.Mode()); err != nil {
			return nil, false, err
		}
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			return nil, false, fmt.Errorf("SSH key %s is encrypted with a passphrase: dockbridge needs an unencrypted key (set another with `docker dockbridge settings set ssh_key PATH`, or unset it to use a generated one)", path)
		}
		return nil, false, fmt.Errorf("parse SSH key %s: %w", path, err)
	}
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	if comment != "" {
		pub += " " + comment
	}
	return &KeyPair{Private: b, Public: pub, Signer: signer}, false, nil
}

// MD5Fingerprint is the fingerprint Hetzner shows for a key ("aa:bb:...").
func MD5Fingerprint(pub ssh.PublicKey) string { return ssh.FingerprintLegacyMD5(pub) }

// HostKeyLabel is the value of the server label that names its pinned host key:
// the first 16 bytes of the key's SHA-256, in hex (labels can't hold base64).
func HostKeyLabel(pub ssh.PublicKey) string {
	sum := sha256.Sum256(pub.Marshal())
	return hex.EncodeToString(sum[:16])
}

// ParseAuthorizedKey parses one authorized_keys line.
func ParseAuthorizedKey(line string) (ssh.PublicKey, error) {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	return pub, nil
}

// CloudInitHostKey converts a host key pair for cloudinit.Params.HostKeys.
func (kp *KeyPair) CloudInitHostKey() cloudinit.HostKey {
	return cloudinit.HostKey{Type: "ed25519", Private: string(kp.Private), Public: kp.Public}
}
