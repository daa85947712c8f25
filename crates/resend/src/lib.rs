//! Edit and resend packets (work in progress).
