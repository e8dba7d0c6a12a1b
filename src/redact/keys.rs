//! Secret key names: which attribute keys hold a whole secret, whatever
//! their case style.

/// Names of keys whose values are secrets (the `keys` preset), as words. A
/// key is secret when its last words, compared with ASCII case ignored, are
/// one of these names. Keys are split into words at every character that is
/// not an ASCII letter or digit and at camelCase / PascalCase humps, so
/// `password`, `DB_PASSWORD`, `db.password`, `dbPassword`, `x-api-key`,
/// `xApiKey`, `APIKey`, `client_secret`, `clientSecret`, `SecretAccessKey`,
/// `SessionToken` and `Set-Cookie` are secret, while `tokenCount`,
/// `tokens_used`, `passwordless_login`, `secretary` and `AccessKeyId` are
/// not (the name must be the key's last word or words).
const SECRET_KEY_NAMES: &[&[&str]] = &[
    &["password"],
    &["passwd"],
    &["pwd"],
    &["passphrase"],
    &["secret"],
    &["token"],
    &["apikey"],
    &["api", "key"],
    &["accesskey"],
    &["access", "key"],
    &["secretkey"],
    &["secret", "key"],
    &["privatekey"],
    &["private", "key"],
    &["authorization"],
    &["cookie"],
    &["credential"],
    &["credentials"],
];

/// The longest name in [`SECRET_KEY_NAMES`], in words.
const MAX_SECRET_NAME_WORDS: usize = 2;

/// The last `N` words of `key` (see [`SECRET_KEY_NAMES`] for where words
/// break), last word first; `None` past the first word.
fn last_words<const N: usize>(key: &str) -> [Option<&str>; N] {
    let b = key.as_bytes();
    let mut out = [None; N];
    let mut found = 0;
    let mut end = b.len();
    while found < N && end > 0 {
        // Skip separators before (i.e. after, in reading order) the word.
        while end > 0 && !is_word_byte(b[end - 1]) {
            end -= 1;
        }
        if end == 0 {
            break;
        }
        let mut start = end - 1;
        while start > 0 && is_word_byte(b[start - 1]) && !is_hump(b, start) {
            start -= 1;
        }
        // Both ends are at ASCII bytes or at the ends of the key: char boundaries.
        out[found] = key.get(start..end);
        found += 1;
        end = start;
    }
    out
}

/// Letters and digits (and any non-ASCII byte: no case humps there).
fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || !c.is_ascii()
}

/// Whether a new word starts at `b[i]` although `b[i - 1]` is a word byte:
/// `dbPassword` (lower or digit, then upper) and `APIKey` (an upper that
/// ends an acronym: upper, upper, lower).
fn is_hump(b: &[u8], i: usize) -> bool {
    let (prev, cur) = (b[i - 1], b[i]);
    if !cur.is_ascii_uppercase() {
        return false;
    }
    (prev.is_ascii_lowercase() || prev.is_ascii_digit())
        || (prev.is_ascii_uppercase() && b.get(i + 1).is_some_and(u8::is_ascii_lowercase))
}

/// Whether `key` is named like a secret (see [`SECRET_KEY_NAMES`]).
pub(super) fn is_secret_key_name(key: &str) -> bool {
    let words = last_words::<MAX_SECRET_NAME_WORDS>(key);
    SECRET_KEY_NAMES.iter().any(|name| {
        // Every word of the name, last first, against the key's last words.
        name.iter()
            .rev()
            .zip(words.iter())
            .all(|(n, w)| w.is_some_and(|w| w.eq_ignore_ascii_case(n)))
    })
}
