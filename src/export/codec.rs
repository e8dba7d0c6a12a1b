//! The encodings of a request on the wire: OTLP/JSON made from the
//! protobuf bytes, gzip, and the gRPC codec that passes protobuf bytes
//! through unchanged (the exporter's requests, the local receiver's
//! answers).

use bytes::{Buf, BufMut, Bytes};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use super::settings::Signal;

/// Re-encodes a protobuf request as OTLP/JSON.
pub fn to_json(signal: Signal, body: &[u8]) -> Result<Vec<u8>, String> {
    let r = match signal {
        Signal::Traces => ExportTraceServiceRequest::decode(body)
            .map_err(|e| e.to_string())
            .and_then(|m| serde_json::to_vec(&m).map_err(|e| e.to_string())),
        Signal::Metrics => ExportMetricsServiceRequest::decode(body)
            .map_err(|e| e.to_string())
            .and_then(|m| serde_json::to_vec(&m).map_err(|e| e.to_string())),
        Signal::Logs => ExportLogsServiceRequest::decode(body)
            .map_err(|e| e.to_string())
            .and_then(|m| serde_json::to_vec(&m).map_err(|e| e.to_string())),
    };
    r.map_err(|e| format!("cannot encode as OTLP/JSON: {e}"))
}

pub fn gzip(body: &[u8]) -> Result<Bytes, String> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    enc.write_all(body)
        .map_err(|e| format!("gzip failed: {e}"))?;
    enc.finish()
        .map(Bytes::from)
        .map_err(|e| format!("gzip failed: {e}"))
}

/// A gRPC codec that passes already-encoded protobuf bytes through.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Self::Error> {
        dst.put(item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Bytes>, Self::Error> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
