//! The MP3 encoding a client may ask for on upload, and the one parser of it: the gateway
//! refuses with 422 exactly what the CLI refuses on its command line.
//!
//! On the wire a request says `quality=V0..V9` (LAME VBR level) or `bitrate=<kbps>` (CBR, one of
//! [`CBR_BITRATES`]), never both. In a job's JSON and in the pipeline's events the choice is the
//! tagged object `{"mode": "vbr", "level": 2}` / `{"mode": "cbr", "kbps": 192}`.

use serde::{Deserialize, Serialize};

/// Name of the upload parameter (query or form field) carrying a VBR level.
pub const QUALITY_PARAM: &str = "quality";
/// Name of the upload parameter (query or form field) carrying a CBR bitrate.
pub const BITRATE_PARAM: &str = "bitrate";

/// Bitrates LAME accepts for CBR MPEG-1 layer III within the allowed 64–320 range. Others in
/// that range (e.g. 100) are not MPEG-1 bitrates, so they are refused rather than rounded.
pub const CBR_BITRATES: [u16; 9] = [64, 80, 96, 112, 128, 160, 192, 256, 320];

/// Requested MP3 quality: LAME VBR level (V0 best .. V9 smallest) or constant bitrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Quality {
    Vbr { level: u8 },
    Cbr { kbps: u16 },
}

impl Default for Quality {
    /// What the converter uses when the upload names no quality.
    fn default() -> Self {
        Quality::Vbr { level: 2 }
    }
}

impl Quality {
    /// Parses `V0`..`V9` (case-insensitive, surrounding blanks ignored).
    pub fn parse_vbr(text: &str) -> Result<Self, QualityError> {
        let invalid = || QualityError(format!("quality must be V0 to V9, got {text:?}"));
        let digits = text.trim().strip_prefix(['V', 'v']).ok_or_else(invalid)?;
        match digits.parse::<u8>() {
            Ok(level) if level <= 9 && digits.len() == 1 => Ok(Quality::Vbr { level }),
            _ => Err(invalid()),
        }
    }

    /// Parses a CBR bitrate in kbps; one of [`CBR_BITRATES`].
    pub fn parse_cbr(text: &str) -> Result<Self, QualityError> {
        let allowed = || {
            let list: Vec<String> = CBR_BITRATES.iter().map(u16::to_string).collect();
            QualityError(format!(
                "bitrate must be one of {} kbps, got {text:?}",
                list.join(", ")
            ))
        };
        let kbps: u16 = text.trim().parse().map_err(|_| allowed())?;
        if CBR_BITRATES.contains(&kbps) {
            Ok(Quality::Cbr { kbps })
        } else {
            Err(allowed())
        }
    }

    /// The choice from an upload's raw `quality` and `bitrate` values; `None` when neither is
    /// given (the converter's default, [`Quality::default`]).
    pub fn from_request(
        quality: Option<&str>,
        bitrate: Option<&str>,
    ) -> Result<Option<Self>, QualityError> {
        match (quality, bitrate) {
            (Some(_), Some(_)) => Err(QualityError(
                "give either quality (V0-V9) or bitrate (kbps), not both".into(),
            )),
            (Some(vbr), None) => Self::parse_vbr(vbr).map(Some),
            (None, Some(cbr)) => Self::parse_cbr(cbr).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// The upload parameter that asks for this quality: `("quality", "V2")` or
    /// `("bitrate", "192")`; [`Quality::from_request`] reads it back.
    pub fn request_parameter(&self) -> (&'static str, String) {
        match self {
            Quality::Vbr { level } => (QUALITY_PARAM, format!("V{level}")),
            Quality::Cbr { kbps } => (BITRATE_PARAM, kbps.to_string()),
        }
    }
}

/// The familiar form shown to people and sent as `quality_label`: `V2`, `192 kbps`.
impl std::fmt::Display for Quality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Quality::Vbr { level } => write!(f, "V{level}"),
            Quality::Cbr { kbps } => write!(f, "{kbps} kbps"),
        }
    }
}

/// Why a requested quality is refused; the text is meant for the person who asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QualityError(pub String);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quality_parses_vbr_and_cbr_and_refuses_the_rest() {
        assert_eq!(Quality::parse_vbr("V0").unwrap(), Quality::Vbr { level: 0 });
        assert_eq!(Quality::parse_vbr("v9").unwrap(), Quality::Vbr { level: 9 });
        assert_eq!(
            Quality::parse_vbr(" V3 ").unwrap(),
            Quality::Vbr { level: 3 }
        );
        for bad in ["V10", "2", "V", "Q2", "V-1", "V01", ""] {
            assert!(Quality::parse_vbr(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Quality::parse_cbr("192").unwrap(),
            Quality::Cbr { kbps: 192 }
        );
        for bad in ["63", "321", "fast", "100", "500", "-128"] {
            assert!(Quality::parse_cbr(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Quality::default().to_string(), "V2");
    }

    #[test]
    fn only_mpeg1_bitrates_are_accepted() {
        let accepted: Vec<u16> = (0..=400)
            .filter(|kbps| Quality::parse_cbr(&kbps.to_string()).is_ok())
            .collect();
        assert_eq!(accepted, CBR_BITRATES);
        let error = Quality::parse_cbr("100").unwrap_err();
        assert!(error.0.contains("64, 80, 96"), "{error}");
    }

    #[test]
    fn a_request_names_one_of_quality_or_bitrate() {
        assert_eq!(Quality::from_request(None, None).unwrap(), None);
        assert_eq!(
            Quality::from_request(Some("v0"), None).unwrap(),
            Some(Quality::Vbr { level: 0 })
        );
        assert_eq!(
            Quality::from_request(None, Some("128")).unwrap(),
            Some(Quality::Cbr { kbps: 128 })
        );
        assert!(Quality::from_request(Some("V2"), Some("192")).is_err());
        assert!(Quality::from_request(None, Some("100")).is_err());
    }

    #[test]
    fn the_request_parameter_reads_back_as_the_same_quality() {
        for quality in [Quality::Vbr { level: 7 }, Quality::Cbr { kbps: 96 }] {
            let (name, value) = quality.request_parameter();
            let parsed = match name {
                QUALITY_PARAM => Quality::from_request(Some(&value), None),
                BITRATE_PARAM => Quality::from_request(None, Some(&value)),
                other => panic!("unexpected parameter {other}"),
            };
            assert_eq!(parsed.unwrap(), Some(quality));
        }
    }

    #[test]
    fn the_json_form_is_a_tagged_object() {
        let json = serde_json::to_value(Quality::Cbr { kbps: 192 }).unwrap();
        assert_eq!(json, json!({"mode": "cbr", "kbps": 192}));
        let back: Quality = serde_json::from_value(json!({"mode": "vbr", "level": 0})).unwrap();
        assert_eq!(back, Quality::Vbr { level: 0 });
    }
}
