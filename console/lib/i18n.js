// The API's error answers in Chinese. The API's texts are fixed English phrases (it never echoes
// input), so they are translated by lookup; an unknown phrase is shown as it is.

const REASONS = {
  'is not valid JSON': '不是有效的 JSON',
  'must be a JSON object': '必须是 JSON 对象',
  'appears twice in the same object': '在同一个对象里出现了两次',
  'is not a known field': '不是已知的字段',
  'must be an object': '必须是对象',
  'must be an array': '必须是数组',
  'must be a string': '必须是字符串',
  'must not be empty': '不能为空',
  'is required': '必填',
  'is longer than 2048 bytes': '超过 2048 字节',
  'is longer than 256 bytes': '超过 256 字节',
  'must list at least one word': '至少要有一个词',
  'lists more than 100 words': '超过 100 个词',
  'holds more than 200 rules': '超过 200 条规则',
  'needs the WeChat API (WECHAT_APPID and WECHAT_APPSECRET)': '需要微信接口（设置 WECHAT_APPID 和 WECHAT_APPSECRET）',
  'needs ALERT_WEBHOOK_URL': '需要先设置 ALERT_WEBHOOK_URL',
  'must be a UTC offset like +08:00': '必须是 +08:00 这样的 UTC 偏移',
  'must be an integer from 1 to 2592000': '必须是 1 到 2592000（30 天）之间的整数',
  'must be an integer from 60 to 2592000': '必须是 60 到 2592000（30 天）之间的整数',
  'must be true or false': '必须是 true 或 false',
  'must be waiting, queue or credentials': '必须是 waiting、queue 或 credentials',
  'must be wecom or json': '必须是 wecom 或 json',
  'must be exact or contains': '必须是 exact（完全匹配）或 contains（包含）',
  'must be all or on_request': '必须是 all 或 on_request',
  'is required when mode is on_request': '“用户要求时转人工”模式下必填',
  'must be an integer from 60 to 604800': '必须是 60 到 604800 之间的整数',
  'holds more than 48 ranges': '超过 48 个时段',
  'must be HH:MM-HH:MM (24:00 only as an end)': '格式应为 HH:MM-HH:MM（24:00 只能作结束时间）',
  'must end after it starts': '结束时间必须晚于开始时间',
  'overlaps another range of the same day': '与同一天的另一个时段重叠',
  'is not a weekday (mon to sun)': '不是星期（mon 到 sun）',
  'must be a date YYYY-MM-DD': '必须是 YYYY-MM-DD 格式的日期',
  'must be transfer, reply or transfer_and_notify': '必须是 transfer、reply 或 transfer_and_notify',
  'is required with this action': '这个动作需要填写文字',
  'is only used with transfer_and_notify': '只在“转人工并通知用户”时使用',
  'must be Typing or CancelTyping': '必须是 Typing 或 CancelTyping',
  'must look like prefix@account': '格式应为“前缀@公众号微信号”，如 kf2001@gh_xxx',
  'must be an OpenID: 1 to 64 letters, digits, - or _': '必须是 OpenID：1 到 64 个字母、数字、- 或 _',
  'must be a time in Unix seconds': '必须是 Unix 时间（秒）',
  'must not be before from': '不能早于开始时间',
  'must be at most 92 days after from': '与开始时间最多相隔 92 天',
  'was not issued by this worker for this openid, or was altered': '翻页标记无效（不是本服务为这位用户签发的，或被改动过）',
  'needs the database (WECHAT_DB)': '需要数据库（绑定 WECHAT_DB）',
  'must be an integer from 1 to 3650': '必须是 1 到 3650 之间的整数',
  'must be one of the eleven documented msgtypes': '不是支持的消息类型',
  'must hold exactly one article (WeChat answers 45008 otherwise)': '必须正好包含一篇图文（否则微信返回 45008）',
  'must be a non-empty array': '必须是非空数组',
  'must be a non-negative integer': '必须是非负整数',
  'must be after starttime, within 24 hours of it': '必须晚于开始时间，且相差不超过 24 小时',
  'must be 1..=10000': '必须在 1 到 10000 之间',
  'pass ?openid= or ?kf_account=': '需要 openid 或 kf_account',
  'is required: image, voice, video or thumb': '必填：image、voice、video 或 thumb',
  'must be image, voice, video or thumb': '必须是 image、voice、video 或 thumb',
  'the file is empty': '文件是空的',
  'the multipart body has no file in field media': '请求里没有 media 字段的文件',
  'unsupported file type': '不支持的文件类型',
  'invalid request': '请求无效',
  'request body is too large': '请求内容太大',
  'missing or invalid bearer token': '令牌不正确',
  'not found': '不存在',
  'method not allowed': '不支持这个操作',
  'the worker is not configured correctly; see its logs': 'Worker 配置有误，请查看它的日志',
  'WeChat API could not be reached or answered unexpectedly': '无法连接微信接口，或微信返回了意外的内容',
  'WeChat API did not answer in time': '微信接口超时未响应',
  'internal error': '内部错误',
  'called too recently; retry after the seconds given': '操作太频繁，请稍后再试',
  'the request body could not be read': '请求内容没有完整收到',
  'must be wx followed by 16 lowercase hexadecimal digits': '必须是 wx 加 16 位小写十六进制数字',
  'must be the appid of the path (an account\'s appid never changes)': '必须是这个账号的 AppID（AppID 不能修改）',
  'must be 1 to 64 characters, no control characters': '必须是 1 到 64 个字符',
  'must be 3 to 32 letters or digits': '必须是 3 到 32 个英文字母或数字',
  'must be 43 characters of the base64 alphabet': '必须是 43 个字符（英文字母、数字、+ 或 /）',
  'must be 16 to 64 letters or digits': '必须是 16 到 64 个英文字母或数字',
  'must list at most 20 accounts': '最多 20 个客服账号',
  'must be a customer-service account such as kf2001@gh_xxx': '格式应为“前缀@公众号微信号”，如 kf2001@gh_xxx',
  'must be static or online': '必须是 static 或 online',
  'must be stable or classic': '必须是 stable 或 classic',
  'an account with this appid exists': '这个 AppID 的账号已经存在',
  'an account has at most 100 operator tokens': '一个账号最多 100 个运营令牌',
  'set ACCOUNTS_KEY (32 random bytes, base64) to keep accounts\' secrets': '需要先设置 ACCOUNTS_KEY（32 字节随机数的 base64）才能保存公众号账号',
  'bind the D1 database WECHAT_DB to keep accounts': '需要先绑定 D1 数据库 WECHAT_DB 才能保存公众号账号',
  "the account has no AppSecret: set its secret to call WeChat's API": '这个公众号没有设置 AppSecret，不能调用微信接口（在“账号”页填写）',
  "this token may not do that: an operator token reaches its own account's routes": '这个令牌没有权限：运营令牌只能管理它自己的公众号',
};

const CODES = {
  invalid_request: '请求无效',
  invalid_parameter: '参数无效',
  missing_parameter: '缺少参数',
  unauthorized: '令牌不正确',
  not_found: '不存在',
  method_not_allowed: '不支持这个操作',
  payload_too_large: '文件或内容太大',
  unsupported_media_type: '不支持的文件类型',
  server_misconfigured: 'Worker 配置有误',
  upstream_error: '微信接口出错',
  upstream_timeout: '微信接口超时',
  internal_error: '内部错误',
  too_many_requests: '操作太频繁，请稍后再试',
  conflict: '已存在',
  not_configured: '尚未配置',
  forbidden: '没有权限',
};

/** Chinese for the errcodes an operator meets most (the API's own hint is shown otherwise). */
const HINTS = {
  '-1': '微信系统繁忙，请稍后再试',
  40001: 'access_token 被拒绝：检查 AppID/AppSecret，以及是否有其他系统在刷新这个公众号的 token',
  40003: 'OpenID 无效：必须是本公众号粉丝的 OpenID',
  40007: 'media_id 无效',
  40013: 'AppID 无效：检查 WECHAT_APPID',
  40125: 'AppSecret 无效：检查 WECHAT_APPSECRET',
  40164: '调用 IP 不在公众号的 IP 白名单中',
  43004: '用户没有关注公众号',
  45002: '内容太长',
  45008: '图文消息只能有一篇',
  45009: '接口调用次数已达上限，请稍后再试',
  45011: '调用太频繁，请稍后再试',
  45015: '超出 48 小时：用户最近没有和公众号互动，不能再发客服消息',
  45047: '这次互动的客服消息条数已用完',
  48001: '公众号没有这个接口的权限',
  61451: '参数错误',
  61452: '客服账号无效',
  61453: '客服账号已存在',
  61454: '客服账号名太长（前缀最多 10 个字符）',
  61455: '客服账号名含有非法字符（只能用英文字母和数字）',
  65400: '请先在公众平台开通新版客服功能',
  65401: '客服账号无效',
  65403: '客服昵称不合法',
  65404: '客服账号不合法',
  65405: '客服账号数量已达上限',
  65406: '已经是客服账号',
  65407: '邀请对象已经是本公众号的客服',
  65408: '已经向这个微信号发出过邀请',
  65409: '微信号无效',
  65410: '这个微信号绑定的客服账号数已达上限（每个微信号最多 5 个）',
  65411: '这个客服账号已有一个等待确认的邀请',
  65412: '这个客服账号已经绑定了微信号，不能再邀请',
  65413: '用户不存在对应的会话',
  65414: '用户正在被其他客服接待',
  65415: '客服不在线',
  65416: '查询参数无效',
  65417: '查询时间段超过限制',
};

/** One API phrase in Chinese (unknown phrases as they are). */
export const reason = (msg) => (typeof msg === 'string' ? REASONS[msg] ?? msg : '');

/** A whole error answer as one readable sentence. */
export function explain(status, body) {
  if (status === 0) return '无法连接到服务器，请检查网络后重试。';
  if (body && typeof body.errcode === 'number') {
    const hint = HINTS[body.errcode] ?? body.hint ?? '';
    return `微信返回错误 ${body.errcode}${body.errmsg ? `（${body.errmsg}）` : ''}${hint ? `：${hint}` : ''}`;
  }
  const code = body?.error;
  if (status === 401) return '令牌不正确或已更换，请重新输入。';
  if (status === 404 && code === 'not_found') return '接口不存在：管理 API 未开启（没有设置 ADMIN_TOKEN），或 Worker 版本较旧。';
  let text = CODES[code] ?? (code ? `错误 ${code}` : `HTTP ${status}`);
  // An upload's limit or accepted types are given as data: shown instead of the English sentence.
  const structured = typeof body?.limit_bytes === 'number' || Array.isArray(body?.accepted);
  const detail = structured ? '' : reason(body?.message);
  if (body?.field) text += `：字段 ${body.field}${detail ? ` ${detail}` : ''}`;
  else if (detail && detail !== text) text += `：${detail}`;
  if (typeof body?.limit_bytes === 'number') text += `（最大 ${+(body.limit_bytes / 1048576).toFixed(1)} MB）`;
  if (Array.isArray(body?.accepted)) text += `（支持 ${body.accepted.join('、')}）`;
  if (typeof body?.retry_after === 'number') text += `，请 ${body.retry_after} 秒后重试`;
  if (code === 'not_json') text = `服务器返回了无法识别的内容（HTTP ${status}）`;
  return text;
}
