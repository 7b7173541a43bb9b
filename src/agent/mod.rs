//! The ssh-agent server (draft-miller-ssh-agent). Knows nothing of CTAP.
