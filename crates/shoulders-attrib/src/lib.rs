//! Attribution index for shoulders: a byte-level suffix-array index over contributed
//! documents, in infini-gram's single-shard `u8` layout, answering counts, locations
//! (contribution, document, offset) and OLMoTrace-style maximal matching spans of a model
//! output. See [`index`]. [`normalize`] folds case, Unicode and white space so content, not
//! spelling, is compared; [`copymap`] records who contributed each window of content first;
//! [`shares`] turns the credited windows into shares in parts per million. [`dataset`] opens a
//! data directory's per-dataset index and attributes a text against it. [`generate`] samples text from the same
//! index as an ∞-gram language model. [`paraphrase`] credits the sources of reworded outputs
//! through a passage-level BM25 index and an integer confidence.

pub mod budget;
pub mod copymap;
pub mod dataset;
pub mod generate;
pub mod index;
pub mod normalize;
pub mod paraphrase;
pub mod segments;
pub mod shares;
