//! Building blocks every destination's tag uses: when a tag fires ([`gate`]), where user
//! data and click ids come from ([`sources`]), ecommerce arithmetic ([`commerce`]),
//! normalization and hashing ([`hashing`]), the size caps ([`limits`]) and JSON writing
//! ([`json`]). A destination module combines them in its own [`Mapper`](super::Mapper).

pub mod commerce;
pub mod gate;
pub mod hashing;
pub mod json;
pub mod limits;
pub mod sources;
