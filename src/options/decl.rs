//! The kinds of setting declarations ([`Int`], [`Flag`], [`Choice`],
//! [`Text`]) and how an exporter option's variables are formed; the
//! declarations themselves are in [`super::table`].

/// How a setting's variable is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forms {
    /// The one variable of [`Setting::name`].
    One,
    /// An OTLP exporter option `option`, read per signal and in general,
    /// with the bridge's prefix and (unless `bridge_only`) the standard one.
    Exporter {
        option: &'static str,
        bridge_only: bool,
    },
}

/// The bridge's own prefix for exporter variables.
pub const BRIDGE_EXPORTER_PREFIX: &str = "LAMBDA_OTEL_BRIDGE_EXPORTER_OTLP_";
/// The specification's prefix for exporter variables.
pub const STANDARD_EXPORTER_PREFIX: &str = "OTEL_EXPORTER_OTLP_";

/// The forms of an exporter option, first found wins: `(prefix, per signal)`.
pub const EXPORTER_FORMS: [(&str, bool); 4] = [
    (BRIDGE_EXPORTER_PREFIX, true),
    (BRIDGE_EXPORTER_PREFIX, false),
    (STANDARD_EXPORTER_PREFIX, true),
    (STANDARD_EXPORTER_PREFIX, false),
];

/// The signal names of per-signal forms.
pub const SIGNALS: [&str; 3] = ["TRACES", "METRICS", "LOGS"];

/// An integer setting in `min..=max`.
#[derive(Debug)]
pub struct Int {
    pub name: &'static str,
    pub default: u32,
    pub min: u32,
    pub max: u32,
    /// What the number counts (`ms`, `bytes`, ...).
    pub unit: &'static str,
    pub doc: &'static str,
}

/// A boolean setting.
#[derive(Debug)]
pub struct Flag {
    pub name: &'static str,
    pub forms: Forms,
    pub default: bool,
    /// The specification's rule (`OTEL_SDK_DISABLED`): only `true` (any case)
    /// is true, any other value is false, never an error. Otherwise
    /// `true`/`false`/`1`/`0` and anything else is an error.
    pub only_true: bool,
    pub doc: &'static str,
}

/// One word of a fixed list (case-insensitive).
#[derive(Debug)]
pub struct Choice {
    pub name: &'static str,
    pub forms: Forms,
    pub default: &'static str,
    pub values: &'static [&'static str],
    /// Other spellings accepted: `(alias, value)`.
    pub aliases: &'static [(&'static str, &'static str)],
    pub doc: &'static str,
}

/// A value the owning component parses (a list, an address, a URL, ...).
#[derive(Debug)]
pub struct Text {
    pub name: &'static str,
    pub forms: Forms,
    pub default: TextDefault,
    /// What the value looks like, as the README's "unit / values" says it.
    pub format: &'static str,
    /// The range of the number the format holds, if any (`periodic:<ms>`).
    pub range: Option<(u32, u32)>,
    pub doc: &'static str,
}

/// The default of a [`Text`] setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextDefault {
    /// Nothing: the feature is off or the value absent.
    Unset,
    /// This value, parsed like a given one.
    Value(&'static str),
    /// Taken from elsewhere, as the words say.
    Described(&'static str),
    /// The OTLP endpoint: one per protocol family.
    ByProtocol {
        http: &'static str,
        grpc: &'static str,
    },
}

impl Text {
    /// The value used when the variable is unset, where there is one.
    pub fn default_value(&self) -> Option<&'static str> {
        match self.default {
            TextDefault::Value(v) => Some(v),
            _ => None,
        }
    }
}

/// Any declaration, for listing and checking.
#[derive(Debug, Clone, Copy)]
pub enum Entry {
    Int(&'static Int),
    Flag(&'static Flag),
    Choice(&'static Choice),
    Text(&'static Text),
}

impl Entry {
    pub fn name(&self) -> &'static str {
        match self {
            Entry::Int(s) => s.name,
            Entry::Flag(s) => s.name,
            Entry::Choice(s) => s.name,
            Entry::Text(s) => s.name,
        }
    }

    pub fn forms(&self) -> Forms {
        match self {
            Entry::Int(_) => Forms::One,
            Entry::Flag(s) => s.forms,
            Entry::Choice(s) => s.forms,
            Entry::Text(s) => s.forms,
        }
    }

    pub fn doc(&self) -> &'static str {
        match self {
            Entry::Int(s) => s.doc,
            Entry::Flag(s) => s.doc,
            Entry::Choice(s) => s.doc,
            Entry::Text(s) => s.doc,
        }
    }

    /// The default as the README's "default" column shows it.
    pub fn default_cell(&self) -> String {
        match self {
            Entry::Int(s) => format!("`{}`", s.default),
            Entry::Flag(s) => format!("`{}`", s.default),
            Entry::Choice(s) => format!("`{}`", s.default),
            Entry::Text(s) => match s.default {
                TextDefault::Unset => "none".to_owned(),
                TextDefault::Value(v) => format!("`{v}`"),
                TextDefault::Described(d) => d.to_owned(),
                TextDefault::ByProtocol { http, grpc } => {
                    format!("`{http}` (HTTP), `{grpc}` (gRPC)")
                }
            },
        }
    }

    /// Unit, range or values, as the README's "unit / values" column shows them.
    pub fn values_cell(&self) -> String {
        match self {
            Entry::Int(s) => format!("{}, {}–{}", s.unit, s.min, s.max),
            Entry::Flag(s) if s.only_true => "`true` or anything else (false)".to_owned(),
            Entry::Flag(_) => "bool".to_owned(),
            Entry::Choice(s) => s
                .values
                .iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(", "),
            Entry::Text(s) => match s.range {
                Some((min, max)) => format!("{} ({min}–{max})", s.format),
                None => s.format.to_owned(),
            },
        }
    }

    /// Every variable name this setting is read from.
    pub fn variables(&self) -> Vec<String> {
        match self.forms() {
            Forms::One => vec![self.name().to_owned()],
            Forms::Exporter {
                option,
                bridge_only,
            } => EXPORTER_FORMS
                .iter()
                .filter(|(prefix, _)| !bridge_only || *prefix == BRIDGE_EXPORTER_PREFIX)
                .flat_map(|&(prefix, per_signal)| {
                    if per_signal {
                        SIGNALS
                            .iter()
                            .map(|s| format!("{prefix}{s}_{option}"))
                            .collect()
                    } else {
                        vec![format!("{prefix}{option}")]
                    }
                })
                .collect(),
        }
    }
}

pub(super) const fn exporter(option: &'static str) -> Forms {
    Forms::Exporter {
        option,
        bridge_only: false,
    }
}

// ---- the Telemetry API subscription (src/lambda/telemetry_api.rs) ----------
