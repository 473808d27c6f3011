//! Folds any channel layout down to what MP3 can carry: mono stays mono, the rest become stereo.

use symphonia::core::audio::{Channels, Position};

/// -3 dB: the usual weight for centre and surround channels in a stereo fold-down.
const MINUS_3DB: f32 = std::f32::consts::FRAC_1_SQRT_2;

const LEFT_SIDE: Position = Position::REAR_LEFT
    .union(Position::FRONT_LEFT_CENTER)
    .union(Position::SIDE_LEFT)
    .union(Position::TOP_FRONT_LEFT)
    .union(Position::TOP_REAR_LEFT)
    .union(Position::TOP_SIDE_LEFT)
    .union(Position::BOTTOM_FRONT_LEFT)
    .union(Position::FRONT_LEFT_WIDE);
const RIGHT_SIDE: Position = Position::REAR_RIGHT
    .union(Position::FRONT_RIGHT_CENTER)
    .union(Position::SIDE_RIGHT)
    .union(Position::TOP_FRONT_RIGHT)
    .union(Position::TOP_REAR_RIGHT)
    .union(Position::TOP_SIDE_RIGHT)
    .union(Position::BOTTOM_FRONT_RIGHT)
    .union(Position::FRONT_RIGHT_WIDE);
const LOW_FREQUENCY: Position = Position::LFE1.union(Position::LFE2);

/// How decoded planes map onto the output channels.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Mixer {
    /// One or two planes that are used as they are.
    Direct { channels: u8 },
    /// (left gain, right gain) per input plane, normalised so a full-scale input cannot clip.
    Matrix(Vec<(f32, f32)>),
}

impl Mixer {
    pub fn for_layout(channels: &Channels) -> Self {
        match channels.count() {
            0 | 1 => Self::Direct { channels: 1 },
            2 => Self::Direct { channels: 2 },
            count => Self::Matrix(normalise(plane_gains(channels, count))),
        }
    }

    pub fn output_channels(&self) -> u8 {
        match self {
            Self::Direct { channels } => *channels,
            Self::Matrix(_) => 2,
        }
    }

    /// Turns decoded planes into the output planes (1 or 2), reusing `planes`' buffers.
    pub fn mix(&self, planes: &mut Vec<Vec<f32>>) {
        let Self::Matrix(gains) = self else {
            return;
        };
        let frames = planes.first().map_or(0, Vec::len);
        let mut left = vec![0.0f32; frames];
        let mut right = vec![0.0f32; frames];
        for (plane, &(left_gain, right_gain)) in planes.iter().zip(gains) {
            if left_gain != 0.0 {
                for (out, sample) in left.iter_mut().zip(plane) {
                    *out += sample * left_gain;
                }
            }
            if right_gain != 0.0 {
                for (out, sample) in right.iter_mut().zip(plane) {
                    *out += sample * right_gain;
                }
            }
        }
        planes.clear();
        planes.push(left);
        planes.push(right);
    }
}

/// Planes follow the ascending bit order of their positions; unlabelled layouts get the
/// conventional WAV order for their count.
fn plane_gains(channels: &Channels, count: usize) -> Vec<(f32, f32)> {
    let layout = match channels {
        Channels::Positioned(positions) => Some(*positions),
        _ => u32::try_from(count).ok().and_then(Position::from_count),
    };
    let Some(layout) = layout.filter(|l| l.bits().count_ones() as usize == count) else {
        // Unknown layout: alternate planes between the sides so nothing is lost.
        return (0..count)
            .map(|i| if i % 2 == 0 { (1.0, 0.0) } else { (0.0, 1.0) })
            .collect();
    };
    layout.iter().map(gains_for).collect()
}

fn gains_for(position: Position) -> (f32, f32) {
    if position == Position::FRONT_LEFT {
        (1.0, 0.0)
    } else if position == Position::FRONT_RIGHT {
        (0.0, 1.0)
    } else if LOW_FREQUENCY.contains(position) {
        // Like most fold-downs, drop the LFE: it is a duplicate of the low end of the mains.
        (0.0, 0.0)
    } else if LEFT_SIDE.contains(position) {
        (MINUS_3DB, 0.0)
    } else if RIGHT_SIDE.contains(position) {
        (0.0, MINUS_3DB)
    } else {
        (MINUS_3DB, MINUS_3DB)
    }
}

fn normalise(gains: Vec<(f32, f32)>) -> Vec<(f32, f32)> {
    let left: f32 = gains.iter().map(|g| g.0).sum();
    let right: f32 = gains.iter().map(|g| g.1).sum();
    let scale = left.max(right);
    if scale <= 0.0 {
        return gains;
    }
    gains
        .into_iter()
        .map(|(l, r)| (l / scale, r / scale))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn five_one() -> Channels {
        Channels::Positioned(
            Position::FRONT_LEFT
                | Position::FRONT_RIGHT
                | Position::FRONT_CENTER
                | Position::LFE1
                | Position::REAR_LEFT
                | Position::REAR_RIGHT,
        )
    }

    #[test]
    fn mono_and_stereo_pass_through() {
        assert_eq!(
            Mixer::for_layout(&Channels::Discrete(1)).output_channels(),
            1
        );
        let stereo = Channels::Positioned(Position::FRONT_LEFT | Position::FRONT_RIGHT);
        assert_eq!(Mixer::for_layout(&stereo), Mixer::Direct { channels: 2 });
    }

    #[test]
    fn five_one_folds_to_stereo_without_clipping() {
        let mixer = Mixer::for_layout(&five_one());
        assert_eq!(mixer.output_channels(), 2);
        let mut planes = vec![vec![1.0f32; 4]; 6];
        mixer.mix(&mut planes);
        assert_eq!(planes.len(), 2);
        for plane in &planes {
            assert!(plane.iter().all(|s| (s - 1.0).abs() < 1e-5), "{plane:?}");
        }
    }

    #[test]
    fn lfe_is_dropped_and_sides_stay_on_their_side() {
        let mixer = Mixer::for_layout(&five_one());
        let mut planes = vec![vec![0.0f32; 1]; 6];
        planes[3][0] = 1.0; // LFE
        planes[4][0] = 1.0; // rear left
        mixer.mix(&mut planes);
        assert!(planes[0][0] > 0.2);
        assert_eq!(planes[1][0], 0.0);
    }

    #[test]
    fn unlabelled_six_channels_use_wav_order() {
        let mixer = Mixer::for_layout(&Channels::Discrete(6));
        let Mixer::Matrix(gains) = mixer else {
            panic!("expected a matrix");
        };
        assert_eq!(gains[3], (0.0, 0.0), "fourth WAV channel is the LFE");
    }
}
