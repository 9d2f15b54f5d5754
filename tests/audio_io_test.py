"""Decoding of the formats samplernn-prepare accepts, resampling, and bad files."""

import av
import numpy as np
import pytest
import soundfile as sf

from samplernn_jax import audio_io


def sine(freq_hz, seconds, rate, amplitude=0.5):
  return (amplitude * np.sin(2 * np.pi * freq_hz * np.arange(int(seconds * rate)) / rate)).astype(
    np.float32
  )


def peak_hz(samples_N, rate):
  spectrum = np.abs(np.fft.rfft(samples_N * np.hanning(len(samples_N))))
  return np.argmax(spectrum) * rate / len(samples_N)


def encode_with_pyav(path, codec, samples_N, rate):
  with av.open(str(path), 'w') as container:
    stream = container.add_stream(codec, rate=rate)
    stream.layout = 'mono'
    frame = av.AudioFrame.from_ndarray(samples_N[None, :], format='flt', layout='mono')
    frame.sample_rate = rate
    for packet in list(stream.encode(frame)) + list(stream.encode(None)):
      container.mux(packet)


@pytest.mark.parametrize(
  'suffix,writer',
  [
    ('.flac', 'soundfile'),
    ('.ogg', 'soundfile'),
    ('.wav', 'soundfile'),
    ('.mp3', 'libmp3lame'),
    ('.m4a', 'aac'),
    ('.opus', 'libopus'),
    ('.webm', 'libopus'),
  ],
)
def test_decodes_format_to_mono_at_target_rate(tmp_path, suffix, writer):
  rate = 48000 if writer == 'libopus' else 16000
  x = sine(440, 0.5, rate)
  path = tmp_path / f'tone{suffix}'
  if writer == 'soundfile':
    stereo = np.stack([x, x], axis=1)  # Two channels, to exercise the mono mix.
    sf.write(path, stereo, rate)
  else:
    encode_with_pyav(path, writer, x, rate)
  y = audio_io.read_mono(str(path), 16000)
  assert y.ndim == 1 and y.dtype == np.float32
  # Lossy codecs add priming and padding: allow 0.1 s of slack in length.
  assert abs(len(y) - 8000) < 1600
  assert abs(peak_hz(y, 16000) - 440) < 5
  assert 0.3 < np.abs(y).max() < 0.7


def test_resampling_keeps_frequency_and_predicts_length(tmp_path):
  path = tmp_path / 'tone.wav'
  sf.write(path, sine(1000, 0.37, 44100), 44100)
  y = audio_io.read_mono(str(path), 16000)
  assert len(y) == audio_io.resampled_length(int(0.37 * 44100), 44100, 16000)
  assert abs(peak_hz(y, 16000) - 1000) < 5


@pytest.mark.parametrize(
  'n,rate_in,rate_out',
  [(1, 16000, 8000), (101, 32000, 16000), (12345, 44100, 16000), (999, 8000, 22050)],
)
def test_resampled_length_matches_soxr(n, rate_in, rate_out):
  y = audio_io.resample(np.zeros(n, np.float32), rate_in, rate_out)
  assert len(y) == audio_io.resampled_length(n, rate_in, rate_out)


def test_bad_files_raise_with_reason(tmp_path):
  (tmp_path / 'empty.wav').write_bytes(b'')
  (tmp_path / 'text.mp3').write_text('not audio at all\n' * 50)
  sf.write(tmp_path / 'full.wav', sine(440, 1.0, 16000), 16000, subtype='PCM_16')
  data = (tmp_path / 'full.wav').read_bytes()
  (tmp_path / 'cut.wav').write_bytes(data[: len(data) // 2])
  sf.write(tmp_path / 'nan.wav', np.full(100, np.nan, np.float32), 16000, subtype='FLOAT')
  reasons = {}
  for name in ('empty.wav', 'text.mp3', 'cut.wav', 'nan.wav'):
    with pytest.raises(audio_io.AudioError) as e:
      audio_io.read_audio(str(tmp_path / name))
    reasons[name] = str(e.value)
  assert 'empty' in reasons['empty.wav']
  assert 'not readable audio' in reasons['text.mp3']
  assert 'truncated' in reasons['cut.wav']
  assert 'non-finite' in reasons['nan.wav']


def test_write_wav_atomic_clips_to_16_bit(tmp_path):
  path = tmp_path / 'out.wav'
  audio_io.write_wav_atomic(str(path), np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 2.0]), 8000)
  pcm, rate = sf.read(path, dtype='int16')
  assert rate == 8000 and sf.info(path).subtype == 'PCM_16'
  np.testing.assert_array_equal(pcm, [-32768, -32768, 0, 16384, 32767, 32767])
  assert [p.name for p in tmp_path.iterdir()] == ['out.wav']
