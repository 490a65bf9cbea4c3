//! The chain's outputs and reports do not change by accident: every case below was recorded
//! with the engine as it was before the streaming chain (issue 18), and each must give the same
//! output bytes and the same report, field for field, today.
//!
//! A change that moves a figure on purpose re-records the table (`CALLREC_BLESS=1 cargo test
//! -p callrec-engine --test same_bytes -- --nocapture` prints it) and says why in its commit.

use callrec_engine::dsp::gain::LoudnessTarget;
use callrec_engine::{AudioSource, OutputFormat, ProcessConfig, encode, process};
use callrec_fixtures::{
    CallShape, LineNoise, Span, WavEncoding, WavOptions, synth_call, write_wav,
};
use sha2::{Digest, Sha256};

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn fixture(name: &str) -> AudioSource {
    let path = format!("{}/../fixtures/audio/{name}", env!("CARGO_MANIFEST_DIR"));
    AudioSource::from_bytes(std::fs::read(&path).unwrap()).with_name(name)
}

/// The inputs: synthetic calls over the fast path (PCM16, G.711, float; mono, stereo; 8–48 kHz;
/// one over 2.2 minutes, where the spectrum reads a subset of windows), the compressed paths
/// (FLAC made by our encoder, MP3), GSM and ADPCM from the fixtures.
fn inputs() -> Vec<(&'static str, AudioSource)> {
    let noisy = CallShape::telephone(95_000, 11)
        .with_line_noise(LineNoise {
            rms_dbfs: -60.0,
            pink: true,
        })
        .with_muted(Span {
            start_ms: 40_000,
            len_ms: 3_000,
        });
    let long = CallShape::telephone(170_000, 12);
    let stereo = CallShape::telephone(31_000, 13)
        .with_rate(16_000)
        .with_channels(2);
    let wide = CallShape::telephone(20_000, 14).with_rate(48_000);
    let wav = |shape: &CallShape, encoding| {
        AudioSource::from_bytes(write_wav(
            &synth_call(shape),
            shape.sample_rate,
            &WavOptions::new(encoding),
        ))
    };
    let flac = encode::encode(
        &synth_call(&stereo),
        stereo.sample_rate,
        1.0,
        OutputFormat::Flac,
    )
    .unwrap();
    vec![
        ("noisy_pcm16_8k", wav(&noisy, WavEncoding::I16)),
        ("long_pcm16_8k", wav(&long, WavEncoding::I16)),
        ("noisy_ulaw_8k", wav(&noisy, WavEncoding::MuLaw)),
        ("noisy_alaw_8k", wav(&noisy, WavEncoding::ALaw)),
        ("stereo_pcm16_16k", wav(&stereo, WavEncoding::I16)),
        ("wide_f32_48k", wav(&wide, WavEncoding::F32)),
        ("stereo_flac_16k", AudioSource::from_bytes(flac)),
        ("gsm_32s", fixture("gsm_8k_mono_32s.wav")),
        ("mp3_16k", fixture("speech_16k_mono.mp3")),
        ("adpcm_ms", fixture("adpcm_ms_8k_mono.wav")),
    ]
}

fn configs() -> Vec<(&'static str, ProcessConfig)> {
    let trim = ProcessConfig {
        trim: true,
        target: Some(LoudnessTarget::Lufs(-23.0)),
        ..ProcessConfig::default()
    };
    let mixed = ProcessConfig {
        trim: true,
        downmix: true,
        format: OutputFormat::Ulaw,
        ..ProcessConfig::default()
    };
    let resampled = ProcessConfig {
        resample_hz: Some(16_000),
        downmix: true,
        format: OutputFormat::Flac,
        ..ProcessConfig::default()
    };
    let hot = ProcessConfig {
        target: Some(LoudnessTarget::Dbov(-10.0)),
        format: OutputFormat::Alaw,
        ..ProcessConfig::default()
    };
    let resampled_wav = ProcessConfig {
        trim: true,
        target: Some(LoudnessTarget::Lufs(-23.0)),
        resample_hz: Some(16_000),
        ..ProcessConfig::default()
    };
    let resampled_hot = ProcessConfig {
        target: Some(LoudnessTarget::Dbov(-10.0)),
        resample_hz: Some(11_025),
        downmix: true,
        format: OutputFormat::Alaw,
        ..ProcessConfig::default()
    };
    // Near the ceiling, so the encoded FLAC is measured again (its true peak in the report).
    let hot_flac = ProcessConfig {
        trim: true,
        target: Some(LoudnessTarget::Dbov(-10.0)),
        format: OutputFormat::Flac,
        ..ProcessConfig::default()
    };
    vec![
        ("default", ProcessConfig::default()),
        ("resample_16k_trim_wav", resampled_wav),
        ("resample_11025_hot_alaw", resampled_hot),
        ("trim_-23", trim),
        ("downmix_trim_ulaw", mixed),
        ("resample_16k_flac", resampled),
        ("hot_alaw", hot),
        ("hot_flac", hot_flac),
    ]
}

/// (input, config, output SHA-256, report JSON SHA-256), as recorded.
const RECORDED: &[(&str, &str, &str, &str)] = &[
    (
        "noisy_pcm16_8k",
        "default",
        "12c53a20c0d6a55afead8a04f4a2648629e8eb203c3d61dd8cde252844b96ee7",
        "810bf09fd6cdd8173e0a8d4263cb2ad51047483e92970c2de3cae75b6bd27d1d",
    ),
    (
        "noisy_pcm16_8k",
        "trim_-23",
        "7afdcae56ad664eb14673a1f718859cf6830f28cc326cb624074af0a2a72f0a0",
        "3b897849341ab8bd92f7a877e626280a0aa3c13fda5b994987119a734e74ab68",
    ),
    (
        "noisy_pcm16_8k",
        "downmix_trim_ulaw",
        "9422aeb8544f05185db36d4da4b8d2b4f9d40e6318ac4c5d93b332f628ad6167",
        "e64cdd3ea3b1917f0fe773dd5d17beba4a8fd4a76c1f57670237e5c0bbd4ad04",
    ),
    (
        "noisy_pcm16_8k",
        "resample_16k_flac",
        "33a06ac3ea511aff4d31049ff494aef289c7c6eddbc873e8ac3b4bf5db301dd0",
        "0fd2efd60026b7a405cc3f54eed74537f237019df1bfcd6303dc185b24edc254",
    ),
    (
        "noisy_pcm16_8k",
        "hot_alaw",
        "2bb66657bc026bfadfff36485d80d2c422fbfa44e1069ce5a9436ada6cfb53e0",
        "99ba2eea1e2e950cc9d79c59ff7086240dbecf88e98e55e98c0f66cd65663b6a",
    ),
    (
        "long_pcm16_8k",
        "default",
        "f93cb2d0719f24ea8a6d5d8ab71a3c68479953b00c6e28051837eab7046b9e98",
        "2f17f92240345595db70fb960921e15e2d4b723999b122e12721e4907695e91d",
    ),
    (
        "long_pcm16_8k",
        "trim_-23",
        "f0150d73052751ae01dd0631424a78f2fdecf42380db1ab8e636dd2106e263b1",
        "1ddfb22624580a2f8297a4a20f5c8787fc8f816222de2675166c5da1310f59f8",
    ),
    (
        "long_pcm16_8k",
        "downmix_trim_ulaw",
        "b0e0d5a134307c5d1aa5ec2a35aa5a220362e04ace1eb3dac6ad8c352a7a5856",
        "47174e87fb872d122e85eae1426729482320bc04b40ba25f4916cd9854231579",
    ),
    (
        "long_pcm16_8k",
        "resample_16k_flac",
        "61243764149fa20b99f2b2625116a4fb1aa5aa2596ee4aafc390e253f1bea1a7",
        "d99610bc84577e16a7e54aa9b081cecfb7a3a6965ed8e482cecb81a9bd0fe0dd",
    ),
    (
        "long_pcm16_8k",
        "hot_alaw",
        "bc01db1eacd86a7aad8e952a531b0bc91895798b5f4fdf921e2703627ad676d9",
        "ded3954d926cf2e109cf3afc1735dfd93d6887d89d99e77e873b1caf8916e15f",
    ),
    (
        "noisy_ulaw_8k",
        "default",
        "4914955972d489a04f9520653d135702ccd0e6e003097eebd1e7a386e41a5324",
        "dfaeb22f44ec811808f481d4b482404d2332275775ead48d17b91177d2a24759",
    ),
    (
        "noisy_ulaw_8k",
        "trim_-23",
        "24b7c61f3a1069e45bf3b8c31d7faf37036bd9ce1995e5015ba08298771d0160",
        "462e7ce5e6fda679af8d356052b035b24bde6baf9b16be2d0c711cc5525fb2bd",
    ),
    (
        "noisy_ulaw_8k",
        "downmix_trim_ulaw",
        "113614fec579e4828a05239101cefe6db542950be4d371b9b362bd19fb63bced",
        "217c6ee82e38a37a733d342d965ca1dadfe476e878ffca9a8aaaf6141c59fb3c",
    ),
    (
        "noisy_ulaw_8k",
        "resample_16k_flac",
        "87eae460aa2b302c8f2e1636a3ba8a15c3be02ee7aa6981f56b131123fa73182",
        "fa9f5ceb8508e1811a3da05f400dcda054275d0c0b31ba9b2f155bdb4fdd7ce6",
    ),
    (
        "noisy_ulaw_8k",
        "hot_alaw",
        "289226475625d1ed7b1e787eda012a4e280513c32c9d94c5f589806cdd65c666",
        "4d74071d2ab64088ca86691f8b496097b03b0b99a1f77088f8305a44e4f0ebc5",
    ),
    (
        "noisy_alaw_8k",
        "default",
        "3460694371b34110aa94fa0f0133432f5cfce991d8f260f8e93a43d7a6e9b663",
        "7fc7859da5c6f95e531a79b41a0d92179d097252d24a91fb534d73a407508f9e",
    ),
    (
        "noisy_alaw_8k",
        "trim_-23",
        "769da6383b4e2c07483c0954f0942131b0dbb2fda9d407e2c47170b2a3bee74a",
        "ade0dcb9967c0b09a558dfffee3551631187563fd83e6e39859fb19fcd767a4b",
    ),
    (
        "noisy_alaw_8k",
        "downmix_trim_ulaw",
        "ae01bab8f592520ddad04a16b3707592024e3527cb6d376c82f935c9f4e86246",
        "2957c15bb44f6b36279ba3a3b1c7a20d7e84abaa1734c4b47a34471f36fb96c8",
    ),
    (
        "noisy_alaw_8k",
        "resample_16k_flac",
        "42f5977ea9891b9dfb5a8bb589331d034b363551bd388353fcda7850a4dd22fd",
        "18479bafd4004f02f1735efceca923477e9f7cca30c2e157f7497425efb8ad92",
    ),
    (
        "noisy_alaw_8k",
        "hot_alaw",
        "449fa0f2fc628c3ab4e0c6f7a5089b0fdaf991f2f4ed2c004627a3600513d56b",
        "49e580adbc27940cf1eca89dca57c7a9164d4fb3f95ecedad712838ef968f459",
    ),
    (
        "stereo_pcm16_16k",
        "default",
        "bb21a0c65ceeebea82b7e10345273f47f950eeedf961391a76e05e8e2bff7fc5",
        "0c8f5944d4e43426ec93ba3e969051966725e20bb86a6636b053de71d1bd9e16",
    ),
    (
        "stereo_pcm16_16k",
        "trim_-23",
        "1073b4a254d0da6c2552553af2aa86cd69bf6b8b9fed80c9ddd993a6a0c187b8",
        "1865c93b45553774e2e334f9e6ca633b5f61072717d78478311ae701141a63b8",
    ),
    (
        "stereo_pcm16_16k",
        "downmix_trim_ulaw",
        "48f541fef30f03860026b130fd3c79839dd0ca7451542940fe0a8d17f45e8991",
        "0a2090779bc0b4e392154f48b8a5ff1ada9abca6c15d2d6a26bde0c9a3ca8485",
    ),
    (
        "stereo_pcm16_16k",
        "resample_16k_flac",
        "4680f6528ac1f0f698193f4c918aa48deb407bfad45e8c1fe0854e4fcf8703f9",
        "cd5d9df3798d466cf120fb3af29086f960dc7cb4c0f02f972e37de58b9c8d931",
    ),
    (
        "stereo_pcm16_16k",
        "hot_alaw",
        "05487ad5272d3a5ad84c32211ddee67c80852271a6b3119354ed2df0051d19f4",
        "a8a4942666b33a6fd803c80b305ce76b1d96d74517a7d517c185f2cdc5a7397b",
    ),
    (
        "wide_f32_48k",
        "default",
        "8aa7b4231e439c1a8f13651db6a29700bb39403a1988159573e51928e05adcd3",
        "dfe051523a10e5ce1a95836426bf32ff5cedf2f2072e5a37ea534c82f3d770b3",
    ),
    (
        "wide_f32_48k",
        "trim_-23",
        "e2fd9da515152f21314884f257963133383474ce3ac8bf088fbf092b79e94d0f",
        "c8e19fb73d65da605fe6dd610df0b39a4880c652080cacd124c49cb56bab6554",
    ),
    (
        "wide_f32_48k",
        "downmix_trim_ulaw",
        "f14808548b06b5778e200f44fb1695b7e9b88d2296270f77a34b3a26fcd9574a",
        "42984f6e8e931301f20e2249490a5349b894ecb5bf13b7a0291e20a53f8b2cb7",
    ),
    (
        "wide_f32_48k",
        "resample_16k_flac",
        "2fbe5f65aa43fff00c2365b643e000732498a636794802d3628cb9454411018d",
        "88a0618de49f26841f8104c365eaf9b4007706f53eeecfac2786061b3f5dcfd0",
    ),
    (
        "wide_f32_48k",
        "hot_alaw",
        "5f91144318c37dc8b29cce4c83c895e00e936a16dc461a6970ce6b3336a2384e",
        "65f0cbc90a00b38d31f32bf5aa04d01a4ba306ba364b5ef3c997cac9782520fb",
    ),
    (
        "stereo_flac_16k",
        "default",
        "205a9affa63c506ce7e1ed54051773f082faf270192ee4670fe3afd1e9ba40cc",
        "0e0c488132c21876922c2708a84ac790cf5ca86dceb3cb10b51cd55398515ab7",
    ),
    (
        "stereo_flac_16k",
        "trim_-23",
        "ad5c7d883917107c3fe85af566cb41b06517d6754a59430fbaed96e333023c4a",
        "32e25c837e3ae58bc316b4e9612e1966703daa66694819b3455968e79aeaa9e8",
    ),
    (
        "stereo_flac_16k",
        "downmix_trim_ulaw",
        "48f541fef30f03860026b130fd3c79839dd0ca7451542940fe0a8d17f45e8991",
        "d9a4920c5d27f7e885042799ab07611389df4c89555117351c1cb997857c6e56",
    ),
    (
        "stereo_flac_16k",
        "resample_16k_flac",
        "3b2b7cd50cce60652daaad4a0af717c4e452def97f6e30a4c6a53c7610c712f5",
        "a99af008dcb40ad68cf592d6093c452b71e689371324ed7c36b40b02e41e1ae5",
    ),
    (
        "stereo_flac_16k",
        "hot_alaw",
        "05487ad5272d3a5ad84c32211ddee67c80852271a6b3119354ed2df0051d19f4",
        "d7963e83c525619551b98f3ade446b53e25dfd7d76b8bafe09b73de9af4598b7",
    ),
    (
        "gsm_32s",
        "default",
        "cce14a5ea9571e5f7617f6b60c4346e28ede03a00715be1ff576cf13122001d7",
        "86d2a0b087804778eb4a422fea425323606b1f5b03945c0a96a77e9ec8d2701e",
    ),
    (
        "gsm_32s",
        "trim_-23",
        "d6becfcbe56a04c3b8415da2b25ed8b89670da7aaa2df7b1e4594c331d7e3959",
        "2549baccd7da3c8b2f928c56f62a89dba6b4ea9c2ccb7ec1c2f40428bd108714",
    ),
    (
        "gsm_32s",
        "downmix_trim_ulaw",
        "ab7c7fbbc1e5fffe9d8f3b1db09508e2006ffaf1f8c0cfc82890240d1ee03c3d",
        "f518ff32e7a612875153239037adf283dd4eca6d9e4b786a78111f4554ed77da",
    ),
    (
        "gsm_32s",
        "resample_16k_flac",
        "3aff0b1789da0574418140bc0e01069f6a5124dbd87708acfe7bac120b3821fc",
        "0d3d6411c19715bbd6c95d426ef657c34dd8043048687d97fb0f9634db72bead",
    ),
    (
        "gsm_32s",
        "hot_alaw",
        "c80361cdfd51c403267d3e2122d85536b58332d83bfc600a5b3865367a98f49b",
        "06c8b59fd36692d8058e73308fd0934ab51467793c82838297b230167d2b685a",
    ),
    (
        "mp3_16k",
        "default",
        "c07a6b3280a3b9c2b783104b4021ec53d1c966d2170ad9106e90bdecc068c52e",
        "765d92786a1832ad724b684e2e7dd668c8f80d2f0c4f37c914f40bcadedeff1e",
    ),
    (
        "mp3_16k",
        "trim_-23",
        "dafa27323310e25a346c866589facf023254d3605ac98efb36992bdd66a08c12",
        "db321180a0c9b856b5433205c5d96ba93e7f8b7f91eff2e01f197e8a22773437",
    ),
    (
        "mp3_16k",
        "downmix_trim_ulaw",
        "023e781df2ab059bd1173eb7db8347cce771f2569f3108c9cc2cc0534e8bd484",
        "c3e90e6fa7842762a1a8de9e590b8ce145370a4fe2761195446aa6a3b0d19141",
    ),
    (
        "mp3_16k",
        "resample_16k_flac",
        "b760d0abdd5c9d286b1ac7ae197be7e591e2af0b97433bb0f1ca7cbef4fa7322",
        "2ed4f67a5327ad06822d7de5ccb982cc65c55d1878d968d05a6f6c0cd8aa3cab",
    ),
    (
        "mp3_16k",
        "hot_alaw",
        "cbb186f51858687ab7e319ef13bd6a2df43e679fd4e23c4799da941e4c747434",
        "6e68d1d54b52f492ee56cb93099ce17e124089d72c1adab58d4d3774ce4ffad3",
    ),
    (
        "adpcm_ms",
        "default",
        "038268dbeb56817bd81c2f86a1f74678e8f5abbd0c2f84fbb2809b8fb6c3ccde",
        "0d76670c6b05af695bffddaa50058ada46361424e65781a7c1f6d77e8b2c0a0e",
    ),
    (
        "adpcm_ms",
        "trim_-23",
        "08e0398ab3c2d7279caad0831d14d05ec7d007b16e86db4781811651045e9acb",
        "bbe3b955f669513ac4956a412cc4a6e4fe6e7ff41280c4af1d6bcaf80221473e",
    ),
    (
        "adpcm_ms",
        "downmix_trim_ulaw",
        "3f2496ad6b496a4af58edfa5cc5da1d995308f5b5d71bb75597480f7c2257e77",
        "5d79d182e76623b6b8a53f434875fc0e8b7be3913dbb6f110d56fa7f9fdbec13",
    ),
    (
        "adpcm_ms",
        "resample_16k_flac",
        "9093d37a0126e2420ca5c659a97dae4ad407aab2682a31eb929e6254f14edb67",
        "be1d07ba511a725feccef3ee68231fdd95ac47863da01d085eab62fdc20aedb4",
    ),
    (
        "adpcm_ms",
        "hot_alaw",
        "8b1f85eea1611d117c6f17269375ff7baac35f15a0d591b0c7bb4e63fe363bcd",
        "6298a9fc12962c4b730d8bdeb102862d1a757949edb237ec17503d3ecd77edc2",
    ),
    (
        "noisy_pcm16_8k",
        "resample_16k_trim_wav",
        "f18e9f2f08fed90b8381ae00398dae1bc48e851b80832d26e4d4395b9062178e",
        "086783fc5cac648ba996fcb0961702c9d93e044e02bf54049b9016914eda4949",
    ),
    (
        "noisy_pcm16_8k",
        "resample_11025_hot_alaw",
        "862cca394c5fa482827de949706b82bdbf0e6f631def8460f1b12b764a11ad62",
        "95d783d11bea59edb9c8dd14c02a821a66974b4f828b69d880bb19050e43b4b8",
    ),
    (
        "long_pcm16_8k",
        "resample_16k_trim_wav",
        "c98841c069aaeda5c7931b23f4ce2e97b3f92bd2115b39a4b04abb625dfc627f",
        "3e347deb2e4615f39b3eb2711f1b7f41a66801872ba6877ab5c8493d0d3a9b8a",
    ),
    (
        "long_pcm16_8k",
        "resample_11025_hot_alaw",
        "671b4f341ae88c53495d4a47c6fec9a31b43ee0ecaaef98c52bd96b67134092b",
        "33daeec8df42a9ac5c530b15e5df7d4c5d6ad89a4b98f755ac60acc587bdcf23",
    ),
    (
        "noisy_ulaw_8k",
        "resample_16k_trim_wav",
        "57545916feaa97d2e19431317a0bdabd7d2fd7aecb0756506d78e4adf5e12e27",
        "ab67ef8923211590a31a14383780696c13f9e53d7728f980077b9039985fd47d",
    ),
    (
        "noisy_ulaw_8k",
        "resample_11025_hot_alaw",
        "13f14ad7bd8bd1231782d0c12b1d07ebee571345af65034e0ff597b5166984e3",
        "1bdf43742e0a4696a74d8f236896c426d5b2f6051e7117aa3d626f44b9b56c33",
    ),
    (
        "noisy_alaw_8k",
        "resample_16k_trim_wav",
        "0324099ad202d2fdb34ea58336166002631a468b4b4ac12d065f8b25ebddde4c",
        "f525a5462ed6fdcc0aadede2b21735c90fe30c608deb7d5287462ffd2eb6212c",
    ),
    (
        "noisy_alaw_8k",
        "resample_11025_hot_alaw",
        "6262c0946235ea472d382924e028434146b33ab3bbc28da732701b63d58d6cd1",
        "71c516b6d4e3ee24774209f8de62e34cb742e76102f48d54f58ad79c68004425",
    ),
    (
        "stereo_pcm16_16k",
        "resample_16k_trim_wav",
        "1073b4a254d0da6c2552553af2aa86cd69bf6b8b9fed80c9ddd993a6a0c187b8",
        "1865c93b45553774e2e334f9e6ca633b5f61072717d78478311ae701141a63b8",
    ),
    (
        "stereo_pcm16_16k",
        "resample_11025_hot_alaw",
        "a6ca62089c20933de9deb6d49abc0b5e07f3e626a06723107c2b851fbf1b652d",
        "7552a9d412a3d9cd3acc961d67a84fc51c462e938924b7a3e0e05ea123ef4cdc",
    ),
    (
        "wide_f32_48k",
        "resample_16k_trim_wav",
        "c090ff5b427d77f45f8bcbde964b3c684e58573656ef135b726bda8560976fe0",
        "c5e0a72b45951d07b528416037680b452c13b376431a49cc84cc78d7cc8f789c",
    ),
    (
        "wide_f32_48k",
        "resample_11025_hot_alaw",
        "450ef614fc329c4d5d481e5abb0a3e9bbfedb33ffcbb258e78d29b1741e20c1c",
        "c2008da3756c5bdcf7f20e2309d07157691cba098d580b702e4ad5b74b11cb8a",
    ),
    (
        "stereo_flac_16k",
        "resample_16k_trim_wav",
        "ad5c7d883917107c3fe85af566cb41b06517d6754a59430fbaed96e333023c4a",
        "32e25c837e3ae58bc316b4e9612e1966703daa66694819b3455968e79aeaa9e8",
    ),
    (
        "stereo_flac_16k",
        "resample_11025_hot_alaw",
        "b4a42b9ed48b2983304c8722ed9ec434e0d888ff3658e55556166218d5c71305",
        "3f6070db73b3e41bad75a9b35da8ef4409c88c74297fb7bc75eaf2db13c403ed",
    ),
    (
        "gsm_32s",
        "resample_16k_trim_wav",
        "e7c29df0ab39593dcd76aa6c4de1f2a087464c30927a12babec5ded83f4706c0",
        "d812306a9ff82a1b02ec8adec3685ceebbe54084fb8210f9e1f0a4b8e9843ff0",
    ),
    (
        "gsm_32s",
        "resample_11025_hot_alaw",
        "e312311cf734baafaefc139beaf2269e70d60cf3223979d49db6e8e3fa57b651",
        "dd46591e83f2a2b0853d8f20fe854d59fdc651585b7fae54020b4c3e3f427df3",
    ),
    (
        "mp3_16k",
        "resample_16k_trim_wav",
        "dafa27323310e25a346c866589facf023254d3605ac98efb36992bdd66a08c12",
        "db321180a0c9b856b5433205c5d96ba93e7f8b7f91eff2e01f197e8a22773437",
    ),
    (
        "mp3_16k",
        "resample_11025_hot_alaw",
        "a2da39d24a7c46ae005acc6d902875f2a4edcf5decdf79669de74c22c4b1089a",
        "cab0a2d89776280a8a184ec702a5fca358d82f7a55e489346e1fd4df57fd417b",
    ),
    (
        "adpcm_ms",
        "resample_16k_trim_wav",
        "89e81b44c3618fcab56cc6a931417106b4c3ccccdff7d808207c55746179e660",
        "b776509ced9eafd7829e5d7349a6abecdcdd4d19baf6f5388f86c756a489e83c",
    ),
    (
        "adpcm_ms",
        "resample_11025_hot_alaw",
        "4848d66f7f036203ab26fd2c2a32498c17709d3c0a0616ab592fb299119c93f0",
        "4fbb37b5b945e3171328c915dff934778ac1f62f4269d33c2d68fd3fa49a5c0f",
    ),
    (
        "noisy_pcm16_8k",
        "hot_flac",
        "3ac884d9086adf5d7c7512eaa52be2078c7e90ff3df52642b52f602ead5d0e87",
        "c0a31163f02635ad2a318a649a94fa70655e404d87fbc85d81db2d3ea8f11cef",
    ),
    (
        "long_pcm16_8k",
        "hot_flac",
        "9ea956ba1567cda4c4a3d4fece0fc9fee96647e213952069db3dbd1deb4aa419",
        "41668174a970fe982dd03f08308cb0bea8e73c92ba37601b5d8191d7eb82b598",
    ),
    (
        "noisy_ulaw_8k",
        "hot_flac",
        "bbc9e67c46d63bf73571d345c840415bee84ae2764596e083d843d1206fbc698",
        "eb39da3f861973c850d4b1efbc9881ab52e9c8676bfd15abbedcde66b9219282",
    ),
    (
        "noisy_alaw_8k",
        "hot_flac",
        "204f9962f545dfec7c6e473714da028a41762a207893fee66e8212ee7bd1b1b2",
        "70859193d43f24f93023e925af7632b35705a34dee0398d8df4e00eb1682f5f8",
    ),
    (
        "stereo_pcm16_16k",
        "hot_flac",
        "0d6fd20be2132c4b05a84f2d626c4411da8082ab58254f5b95311729398221eb",
        "c1398cfd474f0fc08cbda90b9ade6bb1009d0ceeac2b5f0123bcd0c1532b53bb",
    ),
    (
        "wide_f32_48k",
        "hot_flac",
        "a4afa2e6da55d73c1d8c26f9425eece60fc0dad865348c30637237a74b5c442f",
        "00ee12d21bdfdb2120e1a5d4d259c02d420fef043de3f80c5abcbab233ffb010",
    ),
    (
        "stereo_flac_16k",
        "hot_flac",
        "723faa362633f61e8e3681c64fdd23d4ed8077e7adc43720030af325b54c807b",
        "ab893a24fba1695b6d7afeebb7ab2a75ccc369400193b4b6f4ba115387549e1a",
    ),
    (
        "gsm_32s",
        "hot_flac",
        "b568bff96f3df74eab7e7a91df162d285d2c0c89478ea9a6c863c5cbbc2ca34f",
        "651027836bb4b558556ec1d72857b2d523ad74ffbbb5447f5846a61e6799b921",
    ),
    (
        "mp3_16k",
        "hot_flac",
        "670ba9c1252d6674360578486dda6360cc40eeca3c45b2aff738a2dc351ec67d",
        "0933fec568cc3a8e2c5d44726fcbd99170ca5afb4cf647c10e3531e05ac0835d",
    ),
    (
        "adpcm_ms",
        "hot_flac",
        "a1d1dba0590ec0cdf5573386aa29edfe575d3a4793aa3a21fd382bbcfaf14f4b",
        "ee8dbb24bb64f1384d0d424a5ed0824f9306b125f81a7e4f356cb1468b65f3b8",
    ),
];

#[test]
fn outputs_and_reports_are_the_recorded_ones() {
    let bless = std::env::var_os("CALLREC_BLESS").is_some();
    let mut table = Vec::new();
    let mut wrong = Vec::new();
    for (input, source) in inputs() {
        for (name, config) in configs() {
            let processed = process(&source, &config).unwrap();
            let report = serde_json::to_vec(&processed.report).unwrap();
            let got = (sha(&processed.audio), sha(&report));
            if let Some(dir) = std::env::var_os("CALLREC_DUMP") {
                let dir = std::path::Path::new(&dir);
                std::fs::write(dir.join(format!("{input}.{name}.json")), &report).unwrap();
            }
            let recorded = RECORDED
                .iter()
                .find(|r| r.0 == input && r.1 == name)
                .map(|r| (r.2.to_string(), r.3.to_string()));
            if recorded.as_ref() != Some(&got) {
                wrong.push(format!(
                    "{input} / {name}: got output {} report {}, recorded {recorded:?}\n{}",
                    got.0,
                    got.1,
                    String::from_utf8_lossy(&report)
                ));
            }
            table.push(format!(
                "    (\"{input}\", \"{name}\", \"{}\", \"{}\"),",
                got.0, got.1
            ));
        }
    }
    if bless {
        println!(
            "const RECORDED: &[(&str, &str, &str, &str)] = &[\n{}\n];",
            table.join("\n")
        );
        return;
    }
    assert!(
        wrong.is_empty(),
        "{} of {} differ:\n{}",
        wrong.len(),
        table.len(),
        wrong.join("\n")
    );
}

/// A compressed input decoded to a temporary file (a spill budget far under its size), and a
/// WAV file read through a memory map that is released behind the reader, give the bytes and
/// reports of the same input in memory.
#[test]
fn spilled_and_mapped_inputs_give_the_same_bytes() {
    use callrec_engine::Limits;
    use callrec_engine::decode::access::{Frames, SpillConfig};
    let dir = tempfile::tempdir().unwrap();
    let tiny = SpillConfig {
        memory_bytes: 64 << 10,
        dir: Some(dir.path().to_path_buf()),
    };
    let inputs = inputs();
    for (input, source) in &inputs {
        let opened = Frames::open(source, &Limits::default(), &tiny).unwrap();
        let path = dir.path().join(format!("{input}.in"));
        std::fs::write(&path, source.bytes()).unwrap();
        let mapped = AudioSource::map_file(&path, &Limits::default()).unwrap();
        for (name, config) in configs() {
            let spilled = ProcessConfig {
                spill: tiny.clone(),
                ..config.clone()
            };
            let reference = process(source, &config).unwrap();
            let report = |p: &callrec_engine::Processed| {
                let mut json = serde_json::to_value(&p.report).unwrap();
                json["input"]["file"] = serde_json::Value::Null;
                json
            };
            for (how, got) in [
                ("spilled", process(source, &spilled).unwrap()),
                ("mapped", process(&mapped, &spilled).unwrap()),
            ] {
                assert!(
                    got.audio == reference.audio,
                    "{input} / {name}: {how} output differs"
                );
                assert_eq!(report(&got), report(&reference), "{input} / {name}: {how}");
            }
        }
        // Past the budget, a WAV is read from its bytes and anything else from the spill file.
        assert!(
            opened.in_place()
                || opened.spilled()
                || opened.frames() * opened.channels() * 4 <= 64 << 10,
            "{input}"
        );
    }
    assert!(
        inputs
            .iter()
            .filter(|(_, s)| Frames::open(s, &Limits::default(), &tiny)
                .unwrap()
                .spilled())
            .count()
            >= 3,
        "the compressed inputs went to a file"
    );
    assert!(
        inputs
            .iter()
            .filter(|(_, s)| Frames::open(s, &Limits::default(), &tiny)
                .unwrap()
                .in_place())
            .count()
            >= 6,
        "the WAV inputs were read in place"
    );
}

/// The same bytes and reports on pools of one, two and three workers, with inputs read in
/// place: the analysis halves, the stolen-or-not block conversion, the spectrum's windows side
/// by side and the render's hash beside the encoder all run, and none may change a bit.
#[test]
fn any_thread_count_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = callrec_engine::decode::access::SpillConfig {
        memory_bytes: 64 << 10,
        dir: Some(dir.path().to_path_buf()),
    };
    let inputs = inputs();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut all = Vec::new();
            for (input, source) in &inputs {
                for (name, config) in configs() {
                    let config = ProcessConfig {
                        spill: tiny.clone(),
                        ..config
                    };
                    let processed = process(source, &config).unwrap();
                    all.push((
                        format!("{input} / {name}"),
                        sha(&processed.audio),
                        serde_json::to_string(&processed.report).unwrap(),
                    ));
                }
            }
            all
        })
    };
    let one = run(1);
    for threads in [2, 3] {
        for (a, b) in one.iter().zip(run(threads)) {
            assert_eq!(a.1, b.1, "{}: output on {threads} threads", a.0);
            assert_eq!(a.2, b.2, "{}: report on {threads} threads", a.0);
        }
    }
}
